"""Monthly partitions of ``ingest_observations`` on PostgreSQL (created on demand, dropped by retention).

The migration creates the partitioned parent; the writer calls
:func:`ensure_partitions` for the months of each batch (a cached no-op for
months seen before). Creation is serialised with an advisory lock so several
consumers can race safely. With TimescaleDB the table is a hypertable and none
of this is needed (:func:`layout` says which).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

PARENT = "ingest_observations"
_NAME = re.compile(rf"^{PARENT}_p(\d{{4}})(\d{{2}})$")
_LOCK_ID = 0x6561727468  # "earth"


def month_start(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return datetime(ts.year, ts.month, 1, tzinfo=UTC)


def next_month(month: datetime) -> datetime:
    return datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"{PARENT}_p{month.year:04d}{month.month:02d}"


def parse_partition(name: str) -> datetime | None:
    m = _NAME.match(name)
    return datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=UTC) if m else None


def layout(cur: Any) -> str:
    """``partitioned``, ``hypertable`` or ``plain`` for the observations table (psycopg cursor)."""
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    if cur.fetchone() is not None:
        return "hypertable"
    cur.execute("SELECT relkind FROM pg_class WHERE relname = %s AND relkind IN ('p', 'r')", (PARENT,))
    row = cur.fetchone()
    return "partitioned" if row and row[0] == "p" else "plain"


def existing(cur: Any) -> set[datetime]:
    """Months that have a partition."""
    cur.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s", (PARENT,))
    return {m for (name,) in cur.fetchall() if (m := parse_partition(name)) is not None}


def create(conn: Any, months: Iterable[datetime]) -> None:
    """Create the partitions of ``months`` in their own transaction (psycopg connection, idle)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        have = existing(cur)
        for month in sorted(set(months) - have):
            lo, hi = month.strftime("%Y-%m-%d"), next_month(month).strftime("%Y-%m-%d")
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {partition_name(month)} PARTITION OF {PARENT} "
                f"FOR VALUES FROM ('{lo} 00:00:00+00') TO ('{hi} 00:00:00+00')"
            )


def drop_before(conn: Any, cutoff: datetime) -> list[str]:
    """Drop partitions that end at or before ``cutoff`` (psycopg connection, idle); their names."""
    dropped = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        for month in sorted(existing(cur)):
            if next_month(month) <= cutoff:
                cur.execute(f"DROP TABLE IF EXISTS {partition_name(month)}")
                dropped.append(partition_name(month))
    return dropped
