"""``VIIRS_RETENTION`` days for every file of the domain: store objects and catalog rows together.

Removed when older than the window: granule items (by end time) and their
store objects, outbox messages, finished and stale tasks, failure records, and
files in the watched directory. The store object goes first, then the rows, so
the catalog never points at a missing file for long; an object that is already
gone is not an error.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import delete, select

from earthkeep.catalog.items import delete_items
from earthkeep.catalog.tables import Item, utcnow
from earthkeep.granules.tables import GranuleFailure, GranuleMessage, GranuleTask
from earthkeep.sources.gina import COLLECTION

if TYPE_CHECKING:
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)
BATCH = 500


async def apply_retention(services: Services, days: int | None, *, watch_dir: Path | None = None,
                          now: datetime | None = None) -> dict[str, Any]:
    """Delete everything of the domain older than ``days`` (nothing when ``days`` is None)."""
    if not days:
        return {"skipped": "VIIRS_RETENTION is not set"}
    cutoff = (now or utcnow()) - timedelta(days=days)
    items = objects = 0
    while True:
        with services.sessions() as s:
            old = list(s.scalars(select(Item).where(Item.collection == COLLECTION, Item.end_datetime < cutoff)
                                 .order_by(Item.pk).limit(BATCH)))
            keys = [a.store_key for it in old for a in it.assets]
        if not old:
            break
        for key in keys:
            await services.store.delete(key)
        objects += len(keys)
        with services.sessions.begin() as s:
            delete_items(s, old)
        items += len(old)
    rows = _delete_rows(services, cutoff)
    files = _prune_dir(watch_dir, cutoff) if watch_dir else 0
    out = {"cutoff": cutoff.isoformat(), "items": items, "objects": objects, **rows, "watched_files": files}
    log.info("granules.retention", **out)
    return out


def _delete_rows(services: Services, cutoff: datetime) -> dict[str, int]:
    with services.sessions.begin() as s:
        msgs = s.execute(delete(GranuleMessage).where(GranuleMessage.created_at < cutoff,
                                                      GranuleMessage.sent_at.is_not(None))).rowcount
        tasks = s.execute(delete(GranuleTask).where(GranuleTask.updated_at < cutoff)).rowcount
        fails = s.execute(delete(GranuleFailure).where(GranuleFailure.last_at < cutoff)).rowcount
    return {"messages": int(msgs), "tasks": int(tasks), "failures": int(fails)}


def _prune_dir(directory: Path, cutoff: datetime) -> int:
    if not directory.is_dir():
        return 0
    limit, n = cutoff.timestamp(), 0
    for p in directory.iterdir():
        if p.is_file() and p.stat().st_mtime < limit:
            p.unlink(missing_ok=True)
            n += 1
    return n


