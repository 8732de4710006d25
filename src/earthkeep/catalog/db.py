"""Database engine: dialect switches and the one place driver errors are translated."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from earthkeep.errors import Conflict, EarthkeepError, InvalidInput, SourceUnavailable

log = structlog.get_logger(__name__)


def normalise_url(url: str) -> URL:
    """Accept ``postgresql://`` and ``postgres://`` URLs and use psycopg 3 for them."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername in ("postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_db_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """Build an engine; SQLite gets WAL, a busy timeout and explicit ``BEGIN``.

    Nothing connects here: the first connection is made on first use.
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, echo)
    # No pre-ping (it costs a round trip per checkout): a dead connection fails its
    # statement, SQLAlchemy invalidates the pool, and the caller's retry gets a fresh one.
    return create_engine(
        parsed, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800, echo=echo,
        connect_args={"connect_timeout": 10},
    )


def _sqlite_engine(parsed: URL, echo: bool) -> Engine:
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        parsed, echo=echo, connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=20, max_overflow=20,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE by default: a deferred transaction that reads and then writes fails at
        # once with SQLITE_BUSY when another connection wrote meanwhile (the busy timeout does
        # not apply to that upgrade). Taking the write lock up front makes writers queue up.
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def driver_errors(dialect: Any, statement: str, params: Any = None) -> Iterator[None]:
    """Errors of work done on the driver's connection directly (COPY, binary cursors), as SQLAlchemy raises them.

    ``exec_driver_sql`` wraps driver errors in SQLAlchemy's classes; code that
    uses the DBAPI connection itself for speed wraps them here the same way, so
    :func:`translate_errors` and timeout handling see one kind of error.
    """
    base = dialect.loaded_dbapi.Error
    try:
        yield
    except base as e:
        raise exc.DBAPIError.instance(statement, params, e, base) from e


TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


def is_transient_conflict(e: BaseException) -> bool:
    """True for a PostgreSQL deadlock or serialization failure: the transaction was rolled back, retry it."""
    orig = getattr(e, "orig", None)
    return isinstance(e, exc.DBAPIError) and getattr(orig, "sqlstate", None) in TRANSIENT_SQLSTATES


@contextlib.contextmanager
def translate_errors(what: str = "catalog") -> Iterator[None]:
    """Turn SQLAlchemy/driver errors into earthkeep errors (the only place that does)."""
    try:
        yield
    except EarthkeepError:
        raise
    except exc.IntegrityError as e:
        raise Conflict(f"{what}: {_first_line(e.orig)}") from e
    except exc.DataError as e:  # a value the column cannot hold: NUL in text, a number out of range, ...
        raise InvalidInput(f"{what}: {_first_line(e.orig)}") from e
    except (exc.OperationalError, exc.InterfaceError) as e:
        if _is_connection_error(e):
            raise SourceUnavailable(
                f"{what}: database unreachable ({_first_line(e.orig)}); check DATABASE_URL and that the server runs"
            ) from e
        raise
    except exc.DBAPIError as e:
        if e.connection_invalidated:
            raise SourceUnavailable(f"{what}: database connection lost; retry") from e
        raise
    except exc.StatementError as e:  # a value our column types refuse before the driver sees it
        if isinstance(e.orig, ValueError | TypeError):
            raise InvalidInput(f"{what}: {_first_line(e.orig)}") from e
        raise


def _first_line(err: BaseException | None) -> str:
    return str(err).strip().splitlines()[0] if err is not None and str(err).strip() else type(err).__name__


def _is_connection_error(e: exc.DBAPIError) -> bool:
    text = str(e.orig).lower()
    return e.connection_invalidated or any(
        s in text for s in ("connection refused", "could not connect", "server closed", "connection failed",
                            "terminating connection", "no such host", "timeout expired", "unable to open database",
                            "database is locked")
    )
