"""Shared helpers of the rescue integration tests (not a test module)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from earthkeep.api.app import create_app
from earthkeep.apikeys import create_key
from earthkeep.runtime import Services
from earthkeep.testbed.ckan import CkanEmulator, create_ckan_app
from earthkeep.testbed.ckan_catalog import PortalSpec, SyntheticPortal
from earthkeep.testbed.runner import serve_app


def rescue_app(services: Services) -> FastAPI:
    """The API with the rescue router (included unless the lead wired it already)."""
    from earthkeep.api.routers.rescue import router

    app = create_app(services=services)
    if not any(getattr(r, "path", None) == "/allocate" for r in app.routes):
        app.include_router(router)
    app.state.services = services  # for servers started without the lifespan
    return app


def client(services: Services) -> TestClient:
    return TestClient(rescue_app(services))


def key(services: Services, *scopes: str, name: str = "test") -> str:
    with services.sessions.begin() as s:
        return create_key(s, name, scopes)[1]


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


@contextmanager
def portal(datasets: int = 300, *, seed: int = 7, tie_block: int = 0, faults: bool = True,
           **latency: float) -> Iterator[tuple[str, CkanEmulator]]:
    """A small emulated CKAN portal on loopback: ``(base_url, emulator)``."""
    from earthkeep.testbed.ckan import Latency

    emu = CkanEmulator(SyntheticPortal(PortalSpec(datasets=datasets, seed=seed, tie_block=tie_block,
                                                  organizations=12)), latency=Latency(**latency))
    with serve_app(create_ckan_app(emu, faults=faults)) as base:
        yield base, emu


def seed_catalog(services: Services, n_datasets: int = 10, per_dataset: int = 2, *, size: int = 1000,
                 base: str = "https://data.example.gov", allow_private: bool = False) -> None:
    """Datasets with ``per_dataset`` file resources each, written as discovery would (no portal needed)."""
    from earthkeep.rescue.catalog import Context, persist_page

    records = []
    for i in range(n_datasets):
        did = f"00000000-0000-4000-a000-{i:012d}"
        records.append({
            "id": did, "name": f"ds-{i}", "title": f"Dataset {i}",
            "metadata_modified": f"2020-01-01T00:00:{i % 60:02d}",
            "organization": {"id": "org-1", "name": "noaa-gov", "title": "NOAA"},
            "resources": [{"id": f"{did}-r{j}", "url": f"{base}/files/{i}/{j}.csv", "format": "CSV",
                           "size": size} for j in range(per_dataset)],
        })
    ctx = Context("https://portal.example.gov", None, 1 << 44, allow_private=allow_private)
    with services.sessions.begin() as s:
        persist_page(s, ctx, records)


def services_for(db_url: str, tmp_path: Any, **transfer: Any) -> Services:
    from earthkeep.settings import load_settings
    from earthkeep.store.obstore import ObstoreStore

    settings = load_settings(catalog={"database_url": db_url},
                             transfer={"work_dir": str(tmp_path / "partial"), **transfer})
    return Services.open(settings, store=ObstoreStore.local(tmp_path / "store"))
