"""Copernicus Marine runs through the one adapter function, substituted by the testbed's stand-in."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
import xarray as xr
from forcing_support import NOW, config, open_services
from sqlalchemy import select

from earthkeep.catalog.tables import Item, Run
from earthkeep.forcing.currents import collect_currents
from earthkeep.forcing.tables import AggregatorCollectionStatus, AggregatorDataset
from earthkeep.sources import cmems
from earthkeep.testbed.cmems import FakeCopernicus, TooManyRequests

CREDS = {"copernicus_username": "someone", "copernicus_password": "secret"}
BBOX = [4.0, 59.0, 5.0, 60.0]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCopernicus:
    stand_in = FakeCopernicus()
    monkeypatch.setattr(cmems, "subset", stand_in)
    return stand_in


async def _no_wait(seconds: float) -> None:
    _no_wait.waits.append(seconds)  # type: ignore[attr-defined]


def test_chunks_per_day_recorded_with_seed_rows(db_url: str, tmp_path: Path, fake: FakeCopernicus) -> None:
    services = open_services(db_url, tmp_path, "http://127.0.0.1:9", bbox=BBOX, forcing=CREDS)
    report = asyncio.run(collect_currents(services, config(services), now=NOW))
    assert report.status == "completed", report.error
    assert len(fake.calls) == 1 + 5 == report.records  # HISTORICAL_DAYS=1 before today, 5 forecast days
    call = fake.calls[0]
    assert (call.dataset_id, call.variables, call.bbox) == ("cmems_mod_glo_phy-cur_anfc_0.083deg_PT6H-i",
                                                             ("uo", "vo"), tuple(BBOX))
    assert all(c.end - c.start == timedelta(days=1) - timedelta(seconds=1) for c in fake.calls)
    with services.sessions() as s:
        items = list(s.scalars(select(Item).where(Item.collection == "cmems-currents")))
        rows = list(s.scalars(select(AggregatorDataset).order_by(AggregatorDataset.valid_time_start)))
        status = s.get(AggregatorCollectionStatus, report.run_id)
    assert len(items) == len(rows) == 6
    assert [r.is_forecast for r in rows] == [False, True, True, True, True, True]
    assert {r.data_type for r in rows} == {"ocean_currents"} and {r.source for r in rows} == {"copernicus"}
    assert status.status == "completed" and status.records_collected == 6
    with xr.open_dataset(tmp_path / "store" / rows[0].file_path, engine="h5netcdf") as ds:
        assert ds["uo"].attrs["standard_name"] == "eastward_sea_water_velocity" and ds.sizes["time"] == 4
    # The next day's run refreshes what was a forecast, and leaves settled days alone.
    fake.calls.clear()
    asyncio.run(collect_currents(services, config(services), now=NOW + timedelta(days=1)))
    refreshed = sorted(c.start for c in fake.calls)
    assert refreshed[0] == rows[1].valid_time_start and len(refreshed) == 6


def test_rate_limits_and_server_errors_back_off_then_succeed(tmp_path: Path, fake: FakeCopernicus) -> None:
    services = open_services(f"sqlite:///{tmp_path}/c.db", tmp_path, "http://127.0.0.1:9", bbox=BBOX,
                             forcing={**CREDS, "forecast_hours": 6}, cmems_forecast_days=0)
    fake.fail_next([TooManyRequests(429), TooManyRequests(503)])
    _no_wait.waits = []  # type: ignore[attr-defined]
    report = asyncio.run(collect_currents(services, config(services), now=NOW, sleep=_no_wait))
    assert report.status == "completed" and report.records == 1
    assert len(fake.calls) == 3 and len(_no_wait.waits) == 2  # type: ignore[attr-defined]
    assert _no_wait.waits[1] > _no_wait.waits[0]  # type: ignore[attr-defined]


def test_retries_spent_fail_the_run(tmp_path: Path, fake: FakeCopernicus) -> None:
    services = open_services(f"sqlite:///{tmp_path}/c.db", tmp_path, "http://127.0.0.1:9", bbox=BBOX,
                             forcing=CREDS, cmems_forecast_days=0, cmems_retries=1)
    fake.fail_next([TooManyRequests(429)] * 2)
    _no_wait.waits = []  # type: ignore[attr-defined]
    report = asyncio.run(collect_currents(services, config(services), now=NOW, sleep=_no_wait))
    assert report.status == "failed" and "after 2 attempts" in report.error and "429" in report.error


def test_without_credentials_the_run_is_skipped(tmp_path: Path, fake: FakeCopernicus,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cmems.TOOLBOX_USER_ENV, raising=False)
    services = open_services(f"sqlite:///{tmp_path}/c.db", tmp_path, "http://127.0.0.1:9", bbox=BBOX)
    report = asyncio.run(collect_currents(services, config(services), now=NOW))
    assert report.status == "skipped" and fake.calls == []
    with services.sessions() as s:
        run = s.get(Run, report.run_id)
        status = s.get(AggregatorCollectionStatus, report.run_id)
    assert run.status == status.status == "skipped" and "COPERNICUS_USERNAME" in run.error_message
