"""A fresh start with nothing about forcing configured queues no collection (issue 14, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from earthkeep.forcing.domain import on_startup, register
from earthkeep.forcing.settings import forcing_config
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.obstore import ObstoreStore

FORCING_ENV = ("FORCING_COLLECT_ON_START", "FORCING_GFS_AWS_URL", "FORCING_GFS_GRID", "COPERNICUS_USERNAME",
               "COPERNICUS_PASSWORD", "HISTORICAL_DAYS", "COLLECTION_SCHEDULE", "EARTHKEEP_CONFIG")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FORCING_ENV:
        monkeypatch.delenv(name, raising=False)


def _services(tmp_path: Path) -> Services:
    s = load_settings(catalog={"database_url": f"sqlite:///{tmp_path}/c.db"})
    services = Services.open(s, store=ObstoreStore.local(tmp_path / "store"))
    register(services)
    return services


def _jobs(services: Services) -> int:
    return int(services.queue.counts().get("pending", 0))


def test_nothing_configured_means_no_startup_collection(tmp_path: Path) -> None:
    services = _services(tmp_path)
    assert forcing_config(services.settings).collect_on_start is False
    assert on_startup(services) is None
    assert _jobs(services) == 0


@pytest.mark.parametrize(("name", "value"), [("FORCING_COLLECT_ON_START", "true"),
                                             ("FORCING_GFS_AWS_URL", "http://127.0.0.1:9/gfs"),
                                             ("COPERNICUS_USERNAME", "someone"),
                                             ("HISTORICAL_DAYS", "2")])
def test_a_configured_source_collects_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    services = _services(tmp_path)
    job_id = on_startup(services)
    assert job_id is not None and services.queue.get(job_id).kind == "forcing.collect"
    assert _jobs(services) == 1


def test_explicit_false_wins_over_configured_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCING_GFS_AWS_URL", "http://127.0.0.1:9/gfs")
    monkeypatch.setenv("FORCING_COLLECT_ON_START", "false")
    assert on_startup(_services(tmp_path)) is None
