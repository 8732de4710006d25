"""The station registry: which station ids the collector accepts, and where they are."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from earthkeep.catalog.db import translate_errors
from earthkeep.catalog.tables import utcnow
from earthkeep.errors import NotFound
from earthkeep.ingest.models import Station
from earthkeep.ingest.tables import StationRow


def upsert_stations(session: Session, stations: Iterable[Station]) -> int:
    """Register stations (name, location and elevation are updated when the id exists).

    An id given twice in one call keeps its last version (one row per id and statement, as PostgreSQL's
    ``ON CONFLICT DO UPDATE`` requires).
    """
    latest = {s.id: s for s in stations}
    rows = [s.model_dump() | {"created_at": utcnow()} for s in latest.values()]
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(StationRow).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={c: getattr(stmt.excluded, c) for c in ("name", "latitude", "longitude", "elevation")},
    )
    session.execute(stmt)
    return len(rows)


def list_stations(session: Session) -> list[Station]:
    rows = session.scalars(select(StationRow).order_by(StationRow.id))
    return [_model(r) for r in rows]


def get_station(session: Session, station_id: str) -> Station:
    row = session.get(StationRow, station_id)
    if row is None:
        raise NotFound(f"station {station_id!r} is not registered (see GET /stations)")
    return _model(row)


def _model(row: StationRow) -> Station:
    return Station(id=row.id, name=row.name, latitude=row.latitude, longitude=row.longitude,
                   elevation=row.elevation)


class StationDirectory:
    """A cached set of registered station ids, refreshed when an unknown id shows up.

    A miss reloads the set at most once per ``min_refresh_s`` (so a storm of
    records from an unknown station costs one query, not one per record).
    """

    def __init__(self, engine: Engine, *, min_refresh_s: float = 1.0) -> None:
        self._engine = engine
        self._ids: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")
        self._min_refresh_s = min_refresh_s
        self._lock = threading.Lock()

    def refresh(self) -> None:
        with translate_errors("station registry"), self._engine.connect() as conn:
            ids = frozenset(conn.scalars(select(StationRow.id)))
        with self._lock:
            self._ids, self._loaded_at = ids, time.monotonic()

    def known(self, station_id: str) -> bool:
        """True when ``station_id`` is registered (reloading the registry on a miss, rate-limited)."""
        if station_id in self._ids:
            return True
        if time.monotonic() - self._loaded_at >= self._min_refresh_s:
            self.refresh()
        return station_id in self._ids

    def prepare(self, station_ids: Iterable[str]) -> None:
        """Reload once up front when a batch names any id not in the cache (call off the event loop)."""
        if any(s not in self._ids for s in set(station_ids)) and \
                time.monotonic() - self._loaded_at >= self._min_refresh_s:
            self.refresh()

    def cached(self, station_id: str) -> bool:
        """Membership in the cached set only (no database access)."""
        return station_id in self._ids
