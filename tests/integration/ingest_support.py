"""Shared helpers of the ingest integration tests (not a test module)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from earthkeep.api.app import create_app
from earthkeep.apikeys import create_key
from earthkeep.ingest.models import Station
from earthkeep.ingest.runtime import runtime_for
from earthkeep.ingest.settings import IngestSettings
from earthkeep.ingest.stations import upsert_stations
from earthkeep.runtime import Services


def app_client(services: Services, settings: IngestSettings) -> TestClient:
    """A TestClient over the API with the ingest router (included unless the lead wired it already)."""
    from earthkeep.api.routers.ingest import router

    runtime_for(services, settings)
    app = create_app(services=services)
    if not any(getattr(r, "original_router", r) is router or getattr(r, "path", None) == "/observations"
                   for r in app.routes):
        app.include_router(router)
    return TestClient(app)


def key(services: Services, *scopes: str) -> dict[str, str]:
    with services.sessions.begin() as s:
        return {"Authorization": f"Bearer {create_key(s, 'test', scopes)[1]}"}


def register(services: Services, stations: list[Station]) -> None:
    with services.sessions.begin() as s:
        upsert_stations(s, stations)


def stored_keys(engine: Engine) -> list[tuple[str, str]]:
    """(station, ts) of every stored observation, as comparable strings."""
    from earthkeep.ingest.models import dedupe_key

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT station_id, ts FROM ingest_observations")).all()
    out = []
    for sid, ts in rows:
        if isinstance(ts, str):  # SQLite raw text
            from datetime import UTC, datetime

            ts = datetime.fromisoformat(ts).replace(tzinfo=UTC)
        out.append(dedupe_key(sid, ts))
    return out


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def rollup_total(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT coalesce(sum(n), 0), coalesce(sum(temperature_count), 0) "
                                "FROM ingest_hourly")).one()
    return {"n": int(row[0]), "temperature_count": int(row[1])}
