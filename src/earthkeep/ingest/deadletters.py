"""Dead letters: records refused by the collector or the consumer, kept for inspection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, insert, select

from earthkeep.catalog.db import translate_errors
from earthkeep.catalog.tables import utcnow
from earthkeep.ingest.models import Rejection
from earthkeep.ingest.tables import DeadLetter

MAX_RECORD_CHARS = 4000


def _jsonable(record: Any) -> Any:
    """The record as JSON (huge or odd records are stored as a truncated string)."""
    import orjson

    try:
        raw = orjson.dumps(record)
    except TypeError:
        return repr(record)[:MAX_RECORD_CHARS]
    return record if len(raw) <= MAX_RECORD_CHARS else raw[:MAX_RECORD_CHARS].decode(errors="replace")


def record_dead_letters(engine: Engine, source: str, rejections: Sequence[Rejection],
                        trace_id: str | None) -> int:
    """Store ``rejections``; the number stored."""
    if not rejections:
        return 0
    now = utcnow()
    rows = [{"received_at": now, "source": source, "station_id": (r.station_id or None) and r.station_id[:200],
             "reason": r.reason, "record": _jsonable(r.record), "trace_id": trace_id} for r in rejections]
    with translate_errors("dead letters"), engine.begin() as conn:
        conn.execute(insert(DeadLetter), rows)
    return len(rows)


def list_dead_letters(engine: Engine, *, limit: int = 100, before_id: int | None = None,
                      station_id: str | None = None) -> list[dict[str, Any]]:
    """Newest first; page with ``before_id`` = the last id seen."""
    q = select(DeadLetter.__table__).order_by(DeadLetter.id.desc()).limit(limit)
    if before_id is not None:
        q = q.where(DeadLetter.id < before_id)
    if station_id is not None:
        q = q.where(DeadLetter.station_id == station_id)
    with translate_errors("dead letters"), engine.connect() as conn:
        rows = conn.execute(q).all()
    return [{"id": r.id, "received_at": r.received_at.isoformat(), "source": r.source,
             "station_id": r.station_id, "reason": r.reason, "record": r.record, "trace_id": r.trace_id}
            for r in rows]
