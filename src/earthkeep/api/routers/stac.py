"""A STAC API over the catalog: landing page, collections, items, search."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import func, select

from earthkeep.api.deps import ReadDep, SessionDep
from earthkeep.api.routers.items import parse_bbox
from earthkeep.catalog.items import ItemQuery, get_item, search_items
from earthkeep.catalog.stac import STAC_VERSION, collection_to_stac, item_to_stac
from earthkeep.catalog.tables import Item
from earthkeep.errors import InvalidInput, NotFound

router = APIRouter(prefix="/stac", tags=["stac"])


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("")
def landing(request: Request, _: ReadDep) -> dict[str, Any]:
    base = _base(request)
    return {"type": "Catalog", "stac_version": STAC_VERSION, "id": "earthkeep", "description": "earthkeep catalog",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [{"rel": "data", "href": f"{base}/stac/collections"},
                      {"rel": "search", "href": f"{base}/stac/search", "method": "GET"}]}


def _collections(session: SessionDep, base: str, name: str | None = None) -> list[dict[str, Any]]:
    stmt = select(Item.collection, func.count(), func.min(Item.start_datetime), func.max(Item.end_datetime),
                  func.min(Item.west), func.min(Item.south), func.max(Item.east), func.max(Item.north)
                  ).group_by(Item.collection).order_by(Item.collection)
    if name:
        stmt = stmt.where(Item.collection == name)
    out = []
    for coll, n, t0, t1, w, s, e, no in session.execute(stmt):
        bbox = [[w, s, e, no]] if w is not None else [[-180, -90, 180, 90]]
        extent = {"spatial": {"bbox": bbox},
                  "temporal": {"interval": [[t0.isoformat() if t0 else None, t1.isoformat() if t1 else None]]}}
        out.append(collection_to_stac(coll, n, extent, base))
    return out


@router.get("/collections")
def collections(request: Request, session: SessionDep, _: ReadDep) -> dict[str, Any]:
    return {"collections": _collections(session, _base(request)), "links": []}


@router.get("/collections/{name}")
def collection(name: str, request: Request, session: SessionDep, _: ReadDep) -> dict[str, Any]:
    found = _collections(session, _base(request), name)
    if not found:
        raise NotFound(f"no collection {name!r}")
    return found[0]


def parse_datetime_range(value: str | None) -> tuple[datetime | None, datetime | None]:
    """STAC ``datetime``: an instant or ``start/end`` with ``..`` for open ends."""
    if not value:
        return None, None
    parts = value.split("/")
    try:
        vals = [None if p in ("", "..") else datetime.fromisoformat(p.replace("Z", "+00:00")) for p in parts]
    except ValueError as exc:
        raise InvalidInput(f"datetime {value!r} is not RFC 3339 (or start/end)") from exc
    if any(v is not None and v.tzinfo is None for v in vals) or len(vals) > 2:
        raise InvalidInput("datetime must be RFC 3339 with a zone, or start/end")
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


@router.get("/search")
def search(
    request: Request, session: SessionDep, _: ReadDep, collections: str | None = None,
    bbox: str | None = None, datetime: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, token: str | None = None,
) -> dict[str, Any]:
    names = [c for c in (collections or "").split(",") if c]
    if len(names) > 1:
        raise InvalidInput("search one collection at a time (collections=NAME)")
    start, end = parse_datetime_range(datetime)
    page = search_items(session, ItemQuery(names[0] if names else None, start, end, parse_bbox(bbox), limit, token))
    base = _base(request)
    links = []
    if page.next_cursor:
        links.append({"rel": "next", "href": str(request.url.include_query_params(token=page.next_cursor))})
    return {"type": "FeatureCollection", "features": [item_to_stac(i, base) for i in page.items],
            "numberReturned": len(page.items), "links": links}


@router.get("/collections/{name}/items")
def collection_items(
    name: str, request: Request, session: SessionDep, _: ReadDep, bbox: str | None = None,
    datetime: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100, token: str | None = None,
) -> dict[str, Any]:
    return search(request, session, _, name, bbox, datetime, limit, token)


@router.get("/collections/{name}/items/{item_id}")
def collection_item(name: str, item_id: str, request: Request, session: SessionDep, _: ReadDep) -> dict[str, Any]:
    return item_to_stac(get_item(session, name, item_id), _base(request))
