"""The ``fetch`` job: download one URL into the store and catalogue it as an item.

The simplest source, and the one every other source's plumbing is checked by:
the transfer engine fetches (segments, retries, verification), the store keeps
the bytes atomically, the catalog records the item, the bus announces it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog
from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from earthkeep.catalog.items import AssetSpec, upsert_item
from earthkeep.catalog.tables import utcnow
from earthkeep.errors import InvalidInput
from earthkeep.events.base import Event
from earthkeep.jobs.handlers import JobContext
from earthkeep.store.keys import safe_key
from earthkeep.transfer.urls import check_url, check_url_offline

if TYPE_CHECKING:
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)


class FetchPayload(BaseModel):
    """What a ``fetch`` job needs."""

    url: str
    collection: str = Field("downloads", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    item_id: str | None = Field(None, max_length=300)
    key: str | None = None
    size: int | None = Field(None, ge=0)
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    md5: str | None = Field(None, pattern=r"^[0-9a-fA-F]{32}$")
    media_type: str | None = None
    start: AwareDatetime | None = None  # a time without a UTC offset is refused, not guessed
    end: AwareDatetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


def parse_payload(payload: dict[str, Any]) -> FetchPayload:
    try:
        return FetchPayload.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"fetch job: {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc


def target_key(p: FetchPayload) -> tuple[str, str]:
    """The item id and store key of a fetch (both checked for traversal)."""
    name = posixpath.basename(urlsplit(p.url).path) or "download"
    item_id = p.item_id or name
    key = safe_key(p.key or f"{p.collection}/{item_id}/{name}")
    return item_id, key


async def fetch_url(
    services: Services, payload: dict[str, Any], *, trace_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Download a URL into the store and record it as a catalog item."""
    from earthkeep.transfer.engine import TransferRequest

    p = parse_payload(payload)
    check_url(p.url, allow_private=services.settings.transfer.allow_private)
    item_id, key = target_key(p)
    req = TransferRequest(url=p.url, key=key, size=p.size, sha256=p.sha256, md5=p.md5, content_type=p.media_type)
    async with services.transfer() as engine:
        res = await engine.fetch(req, progress=progress)
    with services.sessions.begin() as s:
        upsert_item(s, collection=p.collection, item_id=item_id, start=p.start or utcnow(), end=p.end,
                    properties={**p.properties, "source_url": p.url},
                    assets=[AssetSpec("data", key, res.size, res.sha256, p.media_type)])
    await services.bus.publish(Event("item.created", p.collection, {"item_id": item_id, "key": key},
                                     trace_id=trace_id))
    log.info("fetch.stored", key=key, bytes=res.size, url=p.url)
    return {"collection": p.collection, "item_id": item_id, "key": key, "size": res.size, "sha256": res.sha256}


async def fetch_handler(ctx: JobContext) -> dict[str, Any]:
    """The ``fetch`` job: see :func:`fetch_url`."""
    return await fetch_url(ctx.services, ctx.payload, trace_id=ctx.job.trace_id)


def validator(allow_private: bool) -> Callable[[dict[str, Any]], None]:
    """Refuse a fetch payload before it is queued: its fields, its URL (scheme, private ranges), its key."""
    def validate(payload: dict[str, Any]) -> None:
        p = parse_payload(payload)
        check_url_offline(p.url, allow_private)  # the worker resolves the name and checks again
        target_key(p)

    return validate
