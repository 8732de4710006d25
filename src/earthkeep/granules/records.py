"""The catalog side of a granule: item + outbox message in one transaction, failed files, lookups."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from earthkeep.catalog.items import AssetSpec, upsert_item
from earthkeep.catalog.tables import Item, utcnow
from earthkeep.granules.messages import file_data
from earthkeep.granules.outbox import add_message
from earthkeep.granules.tables import GranuleFailure
from earthkeep.sources.gina import COLLECTION, SENSOR, SdrName

MEDIA_TYPE = "application/x-hdf5"


def catalogued(session: Session, names: Iterable[str]) -> set[str]:
    """Which of ``names`` are already items of the granule collection."""
    names = list(names)
    found: set[str] = set()
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        found.update(session.scalars(select(Item.item_id).where(
            Item.collection == COLLECTION, Item.item_id.in_(chunk))))
    return found


def record_granule(
    session: Session, *, sdr: SdrName, name: str, key: str, size: int, sha256: str | None, md5: str | None,
    uri: str, subject: str, source: str, source_url: str | None = None,
) -> dict[str, Any]:
    """Catalogue one verified granule and queue its ``file`` message; returns the message data."""
    props = {"platform_name": sdr.platform_name, "orig_platform_name": sdr.orig_platform_name,
             "sensor": SENSOR, "segment": sdr.segment, "orbit_number": sdr.orbit_number,
             "proctime": sdr.proctime.isoformat(), "source": source, "uri": uri}
    if source_url:
        props["source_url"] = source_url
    extra = {"md5": md5} if md5 else {}
    upsert_item(session, collection=COLLECTION, item_id=name, start=_utc(sdr.start_time), end=_utc(sdr.end_time),
                properties=props, assets=[AssetSpec("data", key, size, sha256, MEDIA_TYPE, extra=extra)])
    data = file_data(sdr, name, uri)
    add_message(session, subject, "file", data)
    session.execute(delete(GranuleFailure).where(GranuleFailure.name == name))
    return data


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC)


def record_failure(session: Session, name: str, url: str, error: str, base_s: float) -> GranuleFailure:
    """Remember a bad file; it is tried again after base_s * 2^(attempts-1) (at most a day)."""
    now = utcnow()
    f = session.get(GranuleFailure, name)
    if f is None:
        f = GranuleFailure(name=name, url=url, attempts=0, error="", first_at=now)
        session.add(f)
    f.attempts += 1
    f.error, f.last_at, f.url = error[:2000], now, url
    f.retry_after = now + timedelta(seconds=min(base_s * 2 ** (f.attempts - 1), 86400))
    session.flush()
    return f


def backing_off(session: Session, now: datetime | None = None) -> set[str]:
    """Names of failed files whose retry time has not come yet."""
    now = now or utcnow()
    return set(session.scalars(select(GranuleFailure.name).where(GranuleFailure.retry_after > now)))


def failures(session: Session, limit: int = 100) -> list[GranuleFailure]:
    return list(session.scalars(select(GranuleFailure).order_by(GranuleFailure.last_at.desc()).limit(limit)))
