"""Bulk writes for discovery: values in the driver's form, multi-row inserts, ids reserved up front.

SQLAlchemy's Core executemany runs every value of every row through Python type
processors (JSON encoding, datetime conversion, parameter dicts); for the
hundred thousand rows of a large discovery run that costs more than the
database's own work. Here rows are tuples already in the database's form and go
through ``Connection.exec_driver_sql`` (driver errors are still wrapped by
SQLAlchemy and translated at the usual boundary):

* :class:`Encoder` gives values as the driver takes them: JSON text from orjson
  (the standard library for what orjson refuses, such as integers beyond 64 bits;
  PostgreSQL receives it with a cast to the column type), and the column type's
  own datetime conversion (naive UTC text on SQLite, aware datetimes on PostgreSQL);
* :meth:`Bulk.insert` sends up to 500 rows per ``INSERT ... VALUES`` statement
  rather than one executemany: SQLite's driver releases the GIL once per
  statement instead of once per row, so a writer thread is not held up row
  after row (each time up to the interpreter's switch interval) while other
  threads run Python;
* :meth:`Bulk.ids` reserves primary keys so that dependent rows (history,
  resources, assets) need no read-back: PostgreSQL takes them from the column's
  sequence; SQLite continues from ``max(id)``, which is safe because every
  catalog transaction on SQLite holds the write lock from its ``BEGIN IMMEDIATE``
  (see :mod:`earthkeep.catalog.db`).

:data:`bulk_tuning` adjusts two interpreter settings while a run lasts (both
process-wide, restored when the last concurrent run leaves):

* the cyclic garbage collector's first threshold, 700 -> 1,000,000 new
  containers: a run keeps tens of thousands of parsed records alive for a
  moment each, so with the default they are promoted to the oldest generation
  and the full passes that follow traverse the whole heap again and again
  (about a fifth of a run's CPU, measured; at 50,000 the young collections
  alone still took 0.3-0.4 s of a 20,000-dataset run, at 1,000,000 0.02 s).
  The records are trees (no reference cycles), so nothing waits longer to be
  freed; cycles made by other threads meanwhile are collected a little later;
* the GIL switch interval, 5 -> 1 ms: the writer thread hands the GIL back at
  every statement, and each time it wants it again it waits for the interval
  while the preparing or listing threads run Python (runs 10% faster, measured).
"""

from __future__ import annotations

import gc
import json
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from itertools import chain
from types import TracebackType
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Table
from sqlalchemy.engine import Dialect

from earthkeep.catalog.db import driver_errors
from earthkeep.catalog.tables import UTCDateTime

Row = tuple[Any, ...]
ROWS_PER_STATEMENT = 500
SQLITE_MAX_PARAMS = 32766  # SQLite's default limit since 3.32 (999 before)
GC_THRESHOLD = 1_000_000  # new containers between young collections during a run (CPython's default: 700)
SWITCH_INTERVAL_S = 0.001  # the GIL switch interval during a run (CPython's default: 0.005)


class _BulkTuning:
    """Context manager: the settings above while any run is inside; the saved ones back after the last.

    A setting already more favourable (a higher threshold, a shorter interval) is left alone.
    Re-entrant across threads: concurrent runs share one saved state.
    """

    def __init__(self, gc_threshold: int, switch_interval_s: float) -> None:
        self.gc_threshold = gc_threshold
        self.switch_interval_s = switch_interval_s
        self._lock = threading.Lock()
        self._inside = 0
        self._saved = (gc.get_threshold(), sys.getswitchinterval())

    def __enter__(self) -> None:
        with self._lock:
            if self._inside == 0:
                self._saved = threshold, interval = gc.get_threshold(), sys.getswitchinterval()
                if threshold[0] < self.gc_threshold:
                    gc.set_threshold(self.gc_threshold, *threshold[1:])
                if interval > self.switch_interval_s:
                    sys.setswitchinterval(self.switch_interval_s)
            self._inside += 1

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                gc.set_threshold(*self._saved[0])
                sys.setswitchinterval(self._saved[1])


bulk_tuning = _BulkTuning(GC_THRESHOLD, SWITCH_INTERVAL_S)


def encode_json(value: Any) -> str:
    """JSON text of ``value``: orjson, or the standard library for what orjson refuses (huge integers)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


class Encoder:
    """Values in the form the driver of ``dialect`` takes them (no connection needed)."""

    json = staticmethod(encode_json)

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._time: Callable[[Any], Any] | None = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)

    def time(self, value: datetime | None) -> Any:
        """``value`` for a :class:`~earthkeep.catalog.tables.UTCDateTime` column."""
        return self._time(value) if self._time and value is not None else value


class Bulk:
    """Bulk statements on one connection (inside the caller's transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self.enc = Encoder(self.dialect)
        self.sqlite = self.dialect.name == "sqlite"
        self.max_params = SQLITE_MAX_PARAMS if sqlite3.sqlite_version_info >= (3, 32) else 999

    def ids(self, table: Table, n: int) -> list[int]:
        """``n`` unused primary keys of ``table`` (an integer ``id`` column)."""
        if n <= 0:
            return []
        if self.sqlite:
            name = self.dialect.identifier_preparer.format_table(table)
            top = self.conn.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {name}").scalar_one()
            return list(range(top + 1, top + 1 + n))
        sql = "SELECT array_agg(nextval(pg_get_serial_sequence(%s, 'id'))) FROM generate_series(1, %s)"
        return list(self.conn.exec_driver_sql(sql, (table.name, n)).scalar_one())

    def insert(self, table: Table, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """``INSERT`` every row (values in ``columns`` order).

        SQLite: up to 500 rows per statement (see the module notes). PostgreSQL: ``COPY ... FROM
        STDIN``, its bulk path (an executemany costs psycopg some 20 µs of Python per row, and long
        multi-row statements are parsed again in Python on every execution).
        """
        if not rows:
            return
        cols = tuple(columns)
        if not self.sqlite:
            self._copy(table, cols, rows)
            return
        per = max(1, min(ROWS_PER_STATEMENT, self.max_params // len(cols)))
        i = 0
        for n in _statement_sizes(len(rows), per):
            part = rows[i : i + n]
            i += n
            self.conn.exec_driver_sql(_insert_sql(self.dialect, table, cols, n), tuple(chain.from_iterable(part)))

    def _copy(self, table: Table, columns: tuple[str, ...], rows: Sequence[Row]) -> None:
        q = self.dialect.identifier_preparer
        sql = f"COPY {q.format_table(table)} ({', '.join(q.quote(c) for c in columns)}) FROM STDIN"
        dbapi = self.conn.connection.dbapi_connection
        assert dbapi is not None  # the connection is checked out: we are inside its transaction
        with driver_errors(self.dialect, sql), dbapi.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[attr-defined]
            for row in rows:
                copy.write_row(row)

    def update(self, table: Table, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """``UPDATE ... WHERE id = ?`` for every row (executemany): the values of ``columns``, then the id."""
        if rows:
            self.conn.exec_driver_sql(_update_sql(self.dialect, table, tuple(columns)), list(rows))


def _statement_sizes(total: int, per: int) -> list[int]:
    """Rows per ``INSERT`` for ``total`` rows: full statements of ``per``, the rest in powers of two.

    SQLite compiles every statement text it has not seen on this connection,
    and a multi-row ``VALUES`` list of a few hundred rows takes as long to
    compile as to run; with a few fixed sizes every statement after the first
    few comes from the driver's statement cache (a remainder of any size did not).
    """
    sizes = [per] * (total // per)
    rest = total % per
    bit = 1 << max(0, rest.bit_length() - 1)
    while rest:
        if rest >= bit:
            sizes.append(bit)
            rest -= bit
        bit >>= 1
    return sizes


def _placeholders(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> list[str]:
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    out = []
    for name in columns:
        col = table.c[name]
        if isinstance(col.type, JSON) and dialect.name != "sqlite":
            out.append(f"CAST({mark} AS {col.type.compile(dialect)})")
        else:
            out.append(mark)
    return out


@lru_cache(maxsize=256)
def _insert_sql(dialect: Dialect, table: Table, columns: tuple[str, ...], rows: int) -> str:
    q = dialect.identifier_preparer
    names = ", ".join(q.quote(c) for c in columns)
    values = "(" + ", ".join(_placeholders(dialect, table, columns)) + ")"
    return f"INSERT INTO {q.format_table(table)} ({names}) VALUES {', '.join([values] * rows)}"


@lru_cache(maxsize=64)
def _update_sql(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
    q = dialect.identifier_preparer
    marks = _placeholders(dialect, table, (*columns, "id"))
    sets = ", ".join(f"{q.quote(c)} = {m}" for c, m in zip(columns, marks, strict=False))
    return f"UPDATE {q.format_table(table)} SET {sets} WHERE id = {marks[-1]}"
