"""Retention of station data: raw observations for N days, hourly rollups longer (or forever).

On PostgreSQL whole monthly partitions older than the cutoff are dropped (cheap)
and the rows before the cutoff in the boundary month are deleted; on SQLite
(or a TimescaleDB hypertable) old rows are deleted. Dead letters follow the raw
observations' retention.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Engine, delete

from earthkeep.catalog.db import translate_errors
from earthkeep.ingest import partitions
from earthkeep.ingest.tables import ConsumerStatsRow, DeadLetter, hourly, observations

log = structlog.get_logger(__name__)


def apply_retention(engine: Engine, *, raw_days: int | None, rollup_days: int | None,
                    now: datetime | None = None) -> dict[str, Any]:
    """Delete what is older than the retention windows; a summary of what went."""
    now = now or datetime.now(UTC)
    out: dict[str, Any] = {"dropped_partitions": [], "deleted_raw": 0, "deleted_rollup": 0,
                           "deleted_dead_letters": 0}
    if raw_days is not None:
        cutoff = now - timedelta(days=raw_days)
        out["raw_cutoff"] = cutoff.isoformat()
        out["dropped_partitions"] = _drop_partitions(engine, cutoff)
        with translate_errors("ingest retention"), engine.begin() as conn:
            out["deleted_raw"] = conn.execute(delete(observations).where(observations.c.ts < cutoff)).rowcount
            out["deleted_dead_letters"] = conn.execute(
                delete(DeadLetter).where(DeadLetter.received_at < cutoff)).rowcount
    with translate_errors("ingest retention"), engine.begin() as conn:  # consumers gone for a week
        conn.execute(delete(ConsumerStatsRow).where(ConsumerStatsRow.updated_at < now - timedelta(days=7)))
    if rollup_days is not None:
        cutoff = now - timedelta(days=rollup_days)
        out["rollup_cutoff"] = cutoff.isoformat()
        with translate_errors("ingest retention"), engine.begin() as conn:
            out["deleted_rollup"] = conn.execute(delete(hourly).where(hourly.c.hour < cutoff)).rowcount
    log.info("ingest.retention", **out)
    return out


def _drop_partitions(engine: Engine, cutoff: datetime) -> list[str]:
    if engine.dialect.name != "postgresql":
        return []
    raw = engine.raw_connection()
    try:
        conn: Any = raw.driver_connection
        with conn.cursor() as cur:
            kind = partitions.layout(cur)
        conn.commit()
        return partitions.drop_before(conn, cutoff) if kind == "partitioned" else []
    finally:
        raw.close()
