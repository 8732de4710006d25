"""Write batches of observations: raw rows and the hourly rollup in one transaction.

PostgreSQL: binary ``COPY`` into a temporary staging table, then one statement
inserts into the partitioned table and folds the rows into ``ingest_hourly``
(min/max/sum/count), then ``COMMIT``. The statement is chosen by what the last
batch found: after a batch without duplicates, the next one is first tried as a
plain insert (about half the database's work per row) inside a savepoint; a
duplicate key undoes just that attempt, and the batch is written with
``ON CONFLICT (station_id, ts) DO NOTHING``, folding exactly the rows that were
new into the rollup. A batch that had duplicates sends the next one straight to
the second form, so a duplicate storm costs no wasted attempts.

SQLite (embedded mode): the same steps with a temporary table under
``BEGIN IMMEDIATE``. A redelivered or duplicate record is therefore never
stored twice and never counted twice in the rollup. Rows are written in
(station, ts) order so concurrent writers take row locks in the same order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import structlog
from sqlalchemy import Engine

from earthkeep.errors import SourceUnavailable
from earthkeep.ingest import partitions
from earthkeep.ingest.models import MEASURE_NAMES, Obs

log = structlog.get_logger(__name__)

_COLS = ", ".join(MEASURE_NAMES)
_ROLLUP_COLS = ", ".join(f"{m}_min, {m}_max, {m}_sum, {m}_count" for m in MEASURE_NAMES)
_ROLLUP_AGGS = ", ".join(f"min({m}), max({m}), coalesce(sum({m}), 0), count({m})" for m in MEASURE_NAMES)

PG_STAGING = (f"CREATE TEMP TABLE IF NOT EXISTS ingest_staging (station_id text, ts timestamptz, "
              f"{', '.join(m + ' double precision' for m in MEASURE_NAMES)}) ON COMMIT DELETE ROWS")
PG_COPY = f"COPY ingest_staging (station_id, ts, {_COLS}) FROM STDIN (FORMAT BINARY)"
PG_COPY_TYPES = ["text", "timestamptz", *["float8"] * len(MEASURE_NAMES)]
_PG_MERGE = ", ".join(
    f"{m}_min = LEAST(h.{m}_min, EXCLUDED.{m}_min), {m}_max = GREATEST(h.{m}_max, EXCLUDED.{m}_max), "
    f"{m}_sum = h.{m}_sum + EXCLUDED.{m}_sum, {m}_count = h.{m}_count + EXCLUDED.{m}_count"
    for m in MEASURE_NAMES)


def _pg_insert_new(bucket: str) -> str:
    """Every staged row is new: insert them all, then fold them all (a duplicate key fails the first statement).

    Two statements in this order, as in :func:`_pg_upsert`: every writer takes
    its row locks on the observations before those on the rollup, each in key
    order, so concurrent writers of either form never deadlock. (A CTE would
    run the rollup first: PostgreSQL finishes unreferenced data-modifying CTEs
    after the main statement.)
    """
    return f"""
INSERT INTO ingest_observations (station_id, ts, {_COLS})
SELECT station_id, ts, {_COLS} FROM ingest_staging ORDER BY station_id, ts;
INSERT INTO ingest_hourly AS h (station_id, hour, n, {_ROLLUP_COLS})
SELECT station_id, {bucket} AS hour, count(*), {_ROLLUP_AGGS}
FROM ingest_staging GROUP BY 1, 2 ORDER BY 1, 2
ON CONFLICT (station_id, hour) DO UPDATE SET n = h.n + EXCLUDED.n, {_PG_MERGE}
"""


def _pg_upsert(bucket: str) -> str:
    """Insert the staged rows that are new, fold exactly those; the first of the two statements returns the count."""
    return f"""
WITH ins AS (
    INSERT INTO ingest_observations (station_id, ts, {_COLS})
    SELECT station_id, ts, {_COLS} FROM ingest_staging ORDER BY station_id, ts
    ON CONFLICT (station_id, ts) DO NOTHING
    RETURNING station_id, ts, {_COLS}
), roll AS (
    INSERT INTO ingest_hourly AS h (station_id, hour, n, {_ROLLUP_COLS})
    SELECT station_id, {bucket} AS hour, count(*), {_ROLLUP_AGGS}
    FROM ins GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (station_id, hour) DO UPDATE SET n = h.n + EXCLUDED.n, {_PG_MERGE}
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM roll)
"""


PG_HOUR = "date_bin('1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
TS_HOUR = "time_bucket('1 hour', ts)"

SQLITE_STAGING = (f"CREATE TEMP TABLE IF NOT EXISTS ingest_staging (station_id TEXT NOT NULL, ts TEXT NOT NULL, "
                  f"{', '.join(m + ' REAL' for m in MEASURE_NAMES)}, PRIMARY KEY (station_id, ts))")
SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime on SQLite


def _sqlite_upsert() -> str:
    merge = ", ".join(
        f"{m}_min = min(coalesce(h.{m}_min, excluded.{m}_min), coalesce(excluded.{m}_min, h.{m}_min)), "
        f"{m}_max = max(coalesce(h.{m}_max, excluded.{m}_max), coalesce(excluded.{m}_max, h.{m}_max)), "
        f"{m}_sum = h.{m}_sum + excluded.{m}_sum, {m}_count = h.{m}_count + excluded.{m}_count"
        for m in MEASURE_NAMES)
    return f"""
INSERT INTO main.ingest_hourly AS h (station_id, hour, n, {_ROLLUP_COLS})
SELECT station_id, substr(ts, 1, 13) || ':00:00.000000', count(*), {_ROLLUP_AGGS}
FROM temp.ingest_staging WHERE true GROUP BY 1, 2
ON CONFLICT (station_id, hour) DO UPDATE SET n = h.n + excluded.n, {merge}
"""


@dataclass(frozen=True)
class WriteResult:
    """``inserted`` new rows; ``duplicates`` rows the database already held (or repeated in the batch)."""

    inserted: int
    duplicates: int
    seconds: float


class ObservationWriter:
    """Writes batches of :class:`Obs` to the catalog database (PostgreSQL or SQLite).

    ``after_commit`` is called with the station ids of a committed batch that
    added rows (the query cache uses it to invalidate those stations).
    """

    def __init__(self, engine: Engine, *, after_commit: Callable[[set[str]], None] | None = None) -> None:
        self.engine = engine
        self.after_commit = after_commit
        self._pg = engine.dialect.name == "postgresql"
        self._layout: str | None = None
        self._months: set[Any] = set()
        self._upsert = ""
        self._insert_new = ""
        self._optimistic = True  # the last batch had no duplicates: try the plain insert first

    def write(self, rows: Sequence[Obs]) -> WriteResult:
        """Insert ``rows`` (new ones only) and update the rollup; commit; raise SourceUnavailable on failure."""
        started = time.perf_counter()
        if not rows:
            return WriteResult(0, 0, 0.0)
        if self._pg:
            try:
                inserted = self._write_pg(rows)
            except _StalePartitions:  # retention dropped a month we had cached: make it again, once
                inserted = self._write_pg(rows)
        else:
            inserted = self._write_sqlite(rows)
        if inserted and self.after_commit is not None:
            try:
                self.after_commit({r.station_id for r in rows})
            except Exception as exc:  # the data is committed; a cache hiccup must not fail the batch
                log.warning("ingest.after_commit_failed", error=repr(exc))
        return WriteResult(inserted, len(rows) - inserted, time.perf_counter() - started)

    # ------------------------------------------------------------ PostgreSQL

    def _write_pg(self, rows: Sequence[Obs]) -> int:
        import psycopg

        raw = self.engine.raw_connection()
        try:
            conn: Any = raw.driver_connection
            self._prepare_pg(conn, rows)
            with conn.cursor() as cur:
                if not raw.info.get("ingest_staging"):
                    cur.execute(PG_STAGING)
                copy_rows(cur, PG_COPY, rows)
                inserted = self._insert_staged(conn, cur, len(rows))
            conn.commit()
            raw.info["ingest_staging"] = True
            self._optimistic = inserted == len(rows)
            return inserted
        except psycopg.Error as exc:
            _rollback(raw)
            if "no partition of relation" in str(exc):
                self.forget_partitions()
                raise _StalePartitions(str(exc)) from exc
            raise SourceUnavailable(f"observations database: {_first_line(exc)}; the batch will be retried") \
                from exc
        finally:
            raw.close()

    def _insert_staged(self, conn: Any, cur: Any, staged: int) -> int:
        """Move the staged rows into the table and the rollup; the number that were new."""
        import psycopg

        if self._optimistic:
            try:
                with conn.transaction():  # a savepoint: a duplicate key undoes only this attempt
                    cur.execute(self._insert_new)
                return staged
            except psycopg.errors.UniqueViolation:
                log.debug("ingest.batch_has_duplicates", rows=staged)
        cur.execute(self._upsert)
        return int(cur.fetchone()[0])

    def _prepare_pg(self, conn: Any, rows: Sequence[Obs]) -> None:
        if self._layout is None:
            with conn.cursor() as cur:
                self._layout = partitions.layout(cur)
                if self._layout == "partitioned":
                    self._months = partitions.existing(cur)
            conn.commit()
            bucket = TS_HOUR if self._layout == "hypertable" else PG_HOUR
            self._upsert, self._insert_new = _pg_upsert(bucket), _pg_insert_new(bucket)
        if self._layout != "partitioned":
            return
        first, last = partitions.month_start(min(rows, key=_TS)[1]), partitions.month_start(max(rows, key=_TS)[1])
        months = {first} if first == last else {partitions.month_start(r[1]) for r in rows}
        missing = months - self._months
        if missing:
            partitions.create(conn, missing)
            self._months |= missing

    def forget_partitions(self) -> None:
        """Re-read which partitions exist (after retention dropped some)."""
        self._layout = None
        self._months = set()

    # ---------------------------------------------------------------- SQLite

    def _write_sqlite(self, rows: Sequence[Obs]) -> int:
        params = [(r.station_id, r.ts.strftime(SQLITE_TS), *r[2:]) for r in rows]
        marks = ", ".join("?" * (2 + len(MEASURE_NAMES)))
        try:
            with self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
                conn.exec_driver_sql(SQLITE_STAGING)
                conn.exec_driver_sql("DELETE FROM temp.ingest_staging")
                conn.exec_driver_sql(f"INSERT OR IGNORE INTO temp.ingest_staging VALUES ({marks})", params)
                conn.exec_driver_sql(
                    "DELETE FROM temp.ingest_staging WHERE EXISTS (SELECT 1 FROM main.ingest_observations o "
                    "WHERE o.station_id = ingest_staging.station_id AND o.ts = ingest_staging.ts)")
                inserted = conn.exec_driver_sql(
                    f"INSERT INTO main.ingest_observations (station_id, ts, {_COLS}) "
                    f"SELECT station_id, ts, {_COLS} FROM temp.ingest_staging ORDER BY station_id, ts").rowcount
                conn.exec_driver_sql(_sqlite_upsert())
                conn.exec_driver_sql("DELETE FROM temp.ingest_staging")
            return int(inserted)
        except Exception as exc:
            from sqlalchemy.exc import DBAPIError

            if isinstance(exc, DBAPIError):
                raise SourceUnavailable(f"observations database: {_first_line(exc.orig)}; retry") from exc
            raise


class _StalePartitions(Exception):
    pass


_TS = itemgetter(1)


def copy_rows(cur: Any, sql: str, rows: Sequence[Obs]) -> None:
    """Binary ``COPY`` of ``rows`` (``sql`` names a table with the observation columns in order)."""
    with cur.copy(sql) as copy:
        copy.set_types(PG_COPY_TYPES)
        write = copy.write_row
        for r in rows:
            write(r)


def _rollback(raw: Any) -> None:
    conn = raw.driver_connection
    if conn is None or conn.closed or conn.broken:
        raw.invalidate()
        return
    try:
        conn.rollback()
    except Exception:
        raw.invalidate()


def _first_line(err: BaseException | None) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
