"""Copernicus Marine policy (chunks, retries, credentials) and the forcing settings."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import xarray as xr

from earthkeep.config import ConfigError, load_settings
from earthkeep.errors import InvalidInput, SourceUnavailable
from earthkeep.forcing.domain import schedules
from earthkeep.forcing.settings import ForcingConfig, ForcingSettings, ForcingSourcesSettings
from earthkeep.sources import cmems
from earthkeep.testbed.cmems import FakeCopernicus, InvalidUsernameOrPassword, TooManyRequests

DAY = datetime(2024, 1, 1, tzinfo=UTC)


def test_day_chunks_cover_the_period_without_overlap() -> None:
    chunks = cmems.day_chunks(DAY, DAY + timedelta(days=3, hours=12), 1)
    assert [c[0] for c in chunks] == [DAY + timedelta(days=i) for i in range(4)]
    assert chunks[-1][1] == DAY + timedelta(days=3, hours=12) - timedelta(seconds=1)
    with pytest.raises(InvalidInput):
        cmems.day_chunks(DAY, DAY, 1)


def test_transient_failures_are_told_apart() -> None:
    assert cmems.is_transient(TooManyRequests(429)) and cmems.is_transient(TooManyRequests(503))
    assert cmems.is_transient(ConnectionError("reset")) and cmems.is_transient(RuntimeError("Read timed out"))
    assert not cmems.is_transient(InvalidUsernameOrPassword("nope"))
    assert not cmems.is_transient(TooManyRequests(404)) and not cmems.is_transient(ValueError("bad"))


def _request(tmp: Path) -> cmems.SubsetRequest:
    return cmems.SubsetRequest(cmems.DEFAULT_DATASET, ("uo", "vo"), (4.0, 59.0, 5.0, 60.0), 0.0, 1.0, DAY,
                               DAY + timedelta(days=1, seconds=-1), tmp, "x.nc")


def test_fetch_backs_off_then_writes_a_product_like_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCopernicus()
    fake.fail_next([TooManyRequests(429)])
    monkeypatch.setattr(cmems, "subset", fake)
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    path = asyncio.run(cmems.fetch_subset(_request(tmp_path), ("u", "p"), retries=2, backoff_s=1.0, sleep=sleep))
    assert len(fake.calls) == 2 and len(waits) == 1 and 0.8 <= waits[0] <= 1.2
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert set(ds.data_vars) == {"uo", "vo"} and ds["vo"].attrs["units"] == "m s-1"
        assert ds["latitude"].attrs["standard_name"] == "latitude" and ds["depth"].attrs["positive"] == "down"
        assert float(ds["longitude"].min()) >= 4.0 and float(ds["longitude"].max()) <= 5.0
        assert ds.sizes["time"] == 4 and ds.sizes["latitude"] == 13


def test_permanent_failures_are_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCopernicus()
    fake.fail_next([InvalidUsernameOrPassword("wrong password")])
    monkeypatch.setattr(cmems, "subset", fake)
    with pytest.raises(SourceUnavailable, match="InvalidUsernameOrPassword"):
        asyncio.run(cmems.fetch_subset(_request(tmp_path), ("u", "p"), retries=5, backoff_s=0))
    assert len(fake.calls) == 1


def test_credentials_from_seed_names_or_the_toolbox(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COPERNICUS_USERNAME", "COPERNICUS_PASSWORD", cmems.TOOLBOX_USER_ENV, cmems.TOOLBOX_PASSWORD_ENV):
        monkeypatch.delenv(name, raising=False)
    assert cmems.credentials(ForcingSettings()) is None
    monkeypatch.setenv(cmems.TOOLBOX_USER_ENV, "tb")
    monkeypatch.setenv(cmems.TOOLBOX_PASSWORD_ENV, "tbp")
    assert cmems.credentials(ForcingSettings()) == ("tb", "tbp")
    monkeypatch.setenv("COPERNICUS_USERNAME", "me")
    monkeypatch.setenv("COPERNICUS_PASSWORD", "mine")
    assert cmems.credentials(ForcingSettings()) == ("me", "mine")


def test_sources_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCING_GFS_MIRRORS", "nomads,aws")
    monkeypatch.setenv("FORCING_BBOX", "-10,50,10,62.5")
    monkeypatch.setenv("FORCING_GFS_AWS_URL", "http://127.0.0.1:8080/")
    monkeypatch.setenv("FORCING_ANALYSIS_HOURS", "3,0")
    s = ForcingSourcesSettings()
    assert s.mirror_urls() == {"nomads": "https://nomads.ncep.noaa.gov/pub/data/nccf/com/gfs/prod",
                               "aws": "http://127.0.0.1:8080"}
    assert s.bbox == [-10.0, 50.0, 10.0, 62.5] and s.analysis_hours == [0, 3]
    assert ForcingConfig(ForcingSettings(), s).forecast_hours == list(range(0, 121, 3))  # 41 files
    monkeypatch.setenv("FORCING_GFS_MIRRORS", "ftp")
    with pytest.raises(ValueError, match="unknown GFS mirrors"):
        ForcingSourcesSettings()


def test_schedules_use_the_seed_cron_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTION_SCHEDULE", "15 */3 * * *")
    by_name = {s.name: s for s in schedules(load_settings())}
    assert by_name["forcing-collect"].cron == "15 */3 * * *" and by_name["forcing-collect"].kind == "forcing.collect"
    assert by_name["forcing-cleanup"].cron == "0 2 * * *" and by_name["forcing-cleanup"].kind == "forcing.cleanup"
    monkeypatch.setenv("CLEANUP_SCHEDULE", "every night")
    with pytest.raises(ConfigError, match="CLEANUP_SCHEDULE"):
        load_settings()
