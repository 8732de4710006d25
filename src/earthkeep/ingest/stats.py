"""Consumer counters: kept in memory by each consumer, flushed to ``ingest_consumer_stats``.

Every consumer process (or the embedded write-through path) owns one row, so
``GET /consumer/stats`` can add up several consumers running anywhere.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from earthkeep.catalog.db import translate_errors
from earthkeep.catalog.tables import utcnow
from earthkeep.ingest.tables import ConsumerStatsRow

COUNTERS = ("received", "dropped_memory", "dropped_db", "inserted", "dead_letters", "failed_batches")


def instance_name(mode: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{mode}:{id(object()) & 0xFFFF:x}"


@dataclass
class ConsumerStats:
    """Counters of one consumer: received, dropped in memory / by the database, inserted, ..."""

    mode: str
    instance: str = ""
    received: int = 0
    dropped_memory: int = 0
    dropped_db: int = 0
    inserted: int = 0
    dead_letters: int = 0
    failed_batches: int = 0
    started_at: datetime = field(default_factory=utcnow)
    _flushed: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.instance = self.instance or instance_name(self.mode)

    def snapshot(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_flushed")
        data["started_at"] = self.started_at.isoformat()
        return data

    def flush(self, engine: Engine, *, every_s: float = 0.0) -> None:
        """Write the counters to the database (at most once per ``every_s``)."""
        now = time.monotonic()
        if every_s and now - self._flushed < every_s:
            return
        self._flushed = now
        values = {c: getattr(self, c) for c in COUNTERS}
        row = {"instance": self.instance, "mode": self.mode, "started_at": self.started_at,
               "updated_at": utcnow(), **values}
        ins = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        stmt = ins(ConsumerStatsRow).values(row)
        stmt = stmt.on_conflict_do_update(index_elements=["instance"], set_=values | {"updated_at": row["updated_at"]})
        with translate_errors("consumer stats"), engine.begin() as conn:
            conn.execute(stmt)


def read_stats(engine: Engine, *, active_within_s: float = 3600.0) -> dict[str, Any]:
    """Totals over consumer instances seen within ``active_within_s``, plus each instance."""
    since = utcnow() - timedelta(seconds=active_within_s)
    with translate_errors("consumer stats"), engine.connect() as conn:
        rows = conn.execute(select(ConsumerStatsRow.__table__).where(ConsumerStatsRow.updated_at >= since)
                            .order_by(ConsumerStatsRow.instance)).all()
    instances = [{"instance": r.instance, "mode": r.mode, "updated_at": r.updated_at.isoformat(),
                  **{c: getattr(r, c) for c in COUNTERS}} for r in rows]
    totals = {c: sum(i[c] for i in instances) for c in COUNTERS}
    return {**totals, "instances": instances}
