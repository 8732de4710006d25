"""Bulk writes for discovery: prebuilt statements run with the driver's executemany, ids allocated up front.

SQLAlchemy's Core executemany runs every value of every row through Python type
processors (JSON encoding, datetime conversion, parameter dicts); for the
hundred thousand rows of a large discovery run that costs more than the
database's own work. A :class:`Bulk` writes rows given as tuples already in the
database's form, through ``Connection.exec_driver_sql`` (so driver errors are
still wrapped by SQLAlchemy and translated at the usual boundary):

* :meth:`Bulk.json` encodes with orjson (json for what orjson refuses, such as
  integers beyond 64 bits); PostgreSQL receives it with a cast to the column type;
* :meth:`Bulk.time` is the column type's own bind conversion (naive UTC text on
  SQLite, the aware datetime on PostgreSQL);
* :meth:`Bulk.ids` reserves primary keys so that dependent rows (history,
  resources, assets) need no read-back: PostgreSQL takes them from the column's
  sequence; SQLite continues from ``max(id)``, which is safe because every
  catalog transaction on SQLite holds the write lock from its ``BEGIN IMMEDIATE``
  (see :mod:`earthkeep.catalog.db`).

:func:`fewer_collections` spaces out the cyclic garbage collector's passes while
a run lasts: a run keeps tens of thousands of parsed records alive for a moment
each, so with the default threshold (700 new containers) they are promoted to
the oldest generation and the full passes that follow traverse the whole heap
again and again (about a fifth of a run's CPU, measured).
"""

from __future__ import annotations

import gc
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Table
from sqlalchemy.engine import Dialect

from earthkeep.catalog.tables import UTCDateTime

Row = tuple[Any, ...]
ROWS_PER_STATEMENT = 500
SQLITE_MAX_PARAMS = 32766  # SQLite's default limit since 3.32 (999 before)
POSTGRES_MAX_PARAMS = 65535
GC_THRESHOLD = 50_000  # new containers between young collections during a run (CPython's default: 700)
_gc_lock = threading.Lock()
_gc_runs = 0
_gc_saved: tuple[int, int, int] = (700, 10, 10)


@contextmanager
def fewer_collections(threshold: int = GC_THRESHOLD) -> Iterator[None]:
    """Raise the collector's first threshold while the block runs; the last concurrent run out restores it.

    Nothing is disabled (collections still happen, just less often) and a threshold already
    higher than ``threshold`` is left alone.
    """
    global _gc_runs, _gc_saved
    with _gc_lock:
        if _gc_runs == 0:
            _gc_saved = gc.get_threshold()
            if _gc_saved[0] < threshold:
                gc.set_threshold(threshold, *_gc_saved[1:])
        _gc_runs += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs -= 1
            if _gc_runs == 0:
                gc.set_threshold(*_gc_saved)


def encode_json(value: Any) -> str:
    """JSON text of ``value``: orjson, or the standard library for what orjson refuses (huge integers)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


class Bulk:
    """Bulk statements on one connection (inside the caller's transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self.sqlite = self.dialect.name == "sqlite"
        self.max_params = (
            (SQLITE_MAX_PARAMS if sqlite3.sqlite_version_info >= (3, 32) else 999)
            if self.sqlite
            else POSTGRES_MAX_PARAMS
        )
        self._time: Callable[[Any], Any] | None = UTCDateTime().dialect_impl(self.dialect).bind_processor(self.dialect)

    json = staticmethod(encode_json)

    def time(self, value: datetime | None) -> Any:
        """``value`` as the driver takes it for a :class:`~earthkeep.catalog.tables.UTCDateTime` column."""
        return self._time(value) if self._time and value is not None else value

    def ids(self, table: Table, n: int) -> list[int]:
        """``n`` unused primary keys of ``table`` (an integer ``id`` column)."""
        if n <= 0:
            return []
        if self.sqlite:
            top = self.conn.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {self._name(table)}").scalar_one()
            return list(range(top + 1, top + 1 + n))
        sql = "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)"
        return [row[0] for row in self.conn.exec_driver_sql(sql, (table.name, n))]

    def insert(self, table: Table, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """``INSERT`` every row (values in ``columns`` order), many rows per statement.

        Multi-row ``VALUES`` rather than executemany: SQLite's driver releases the GIL once per
        statement instead of once per row, so the writer is not held up row after row (each time
        for up to the interpreter's switch interval) while the listing threads run Python.
        """
        cols = tuple(columns)
        per = max(1, min(ROWS_PER_STATEMENT, self.max_params // len(cols)))
        for i in range(0, len(rows), per):
            part = rows[i : i + per]
            self.conn.exec_driver_sql(
                _insert_sql(self.dialect, table, cols, len(part)), tuple(v for row in part for v in row)
            )

    def update(self, table: Table, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """``UPDATE ... WHERE id = ?`` for every row: the values of ``columns``, then the id."""
        if rows:
            self.conn.exec_driver_sql(_update_sql(self.dialect, table, tuple(columns)), list(rows))

    def _name(self, table: Table) -> str:
        return self.dialect.identifier_preparer.format_table(table)


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
