"""Catalog items: search with filters and cursor pages, one item, asset download."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from earthkeep.api import params
from earthkeep.api.deps import ReadDep, ServicesDep, SessionDep
from earthkeep.api.schemas import ItemOut, ItemPageOut
from earthkeep.catalog.items import ItemQuery, get_item, search_items, touch
from earthkeep.errors import InvalidInput, NotFound
from earthkeep.forcing.records import touch_served

router = APIRouter(tags=["items"])


def parse_bbox(bbox: str | None) -> tuple[float, float, float, float] | None:
    """``w,s,e,n`` text -> a checked box (for callers outside the schema layer); :class:`InvalidInput` if bad."""
    try:
        return params.parse_bbox(bbox)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def check_range(start: datetime | None, end: datetime | None) -> None:
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name} must carry a timezone, e.g. 2024-01-01T00:00:00Z")
    if start and end and start > end:
        raise InvalidInput("start is after end")


@router.get("/items", response_model=ItemPageOut)
def list_items(
    session: SessionDep,
    _: ReadDep,
    collection: str | None = None,
    start: Annotated[datetime | None, Query(description="items valid at or after (ISO 8601, with zone)")] = None,
    end: Annotated[datetime | None, Query(description="items valid at or before")] = None,
    bbox: params.BBoxQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> ItemPageOut:
    """Items in catalog order; pass ``next`` back as ``cursor`` for the next page."""
    check_range(start, end)
    page = search_items(session, ItemQuery(collection, start, end, bbox, limit, cursor))
    return ItemPageOut(items=[ItemOut.of(i) for i in page.items], next=page.next_cursor)


@router.get("/items/{collection}/{item_id}", response_model=ItemOut)
def one_item(collection: str, item_id: str, session: SessionDep, _: ReadDep) -> ItemOut:
    return ItemOut.of(get_item(session, collection, item_id))


@router.get("/items/{collection}/{item_id}/assets/{name}")
async def download_asset(
    collection: str, item_id: str, name: str, services: ServicesDep, _: ReadDep
) -> StreamingResponse:
    """Stream one file of an item from the store (records the access time)."""
    with services.sessions.begin() as s:
        item = get_item(s, collection, item_id)
        asset = next((a for a in item.assets if a.name == name), None)
        if asset is None:
            raise NotFound(f"item {item_id!r} has no asset {name!r}")
        touch(s, item)
        touch_served(s, collection, asset.store_key)
        key, media, sha = asset.store_key, asset.media_type, asset.sha256
    info = await services.store.head(key)
    filename = key.rsplit("/", 1)[-1]
    headers = {"Content-Length": str(info.size), "Content-Disposition": f'attachment; filename="{filename}"'}
    if sha:
        headers["X-Checksum-Sha256"] = sha
    return StreamingResponse(
        services.store.stream(key), media_type=media or "application/octet-stream", headers=headers
    )
