"""Copernicus Marine as data and policy: chunks, retries, credentials (the toolbox call faked)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import xarray as xr

from earthkeep.errors import InvalidInput, SourceUnavailable
from earthkeep.forcing.settings import ForcingSettings
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


def test_chunks_of_several_days_end_with_a_shorter_one() -> None:
    chunks = cmems.day_chunks(DAY, DAY + timedelta(days=5), 2)
    assert chunks == [
        (DAY, DAY + timedelta(days=2, seconds=-1)),
        (DAY + timedelta(days=2), DAY + timedelta(days=4, seconds=-1)),
        (DAY + timedelta(days=4), DAY + timedelta(days=5, seconds=-1)),
    ]


def test_http_status_of_a_response_decides_before_the_message() -> None:
    class Response:
        def __init__(self, status_code: int) -> None:
            self.status_code = status_code

    class HTTPError(Exception):
        def __init__(self, status: int, text: str) -> None:
            super().__init__(text)
            self.response = Response(status)

    assert cmems.is_transient(HTTPError(502, "bad gateway"))
    assert cmems.is_transient(HTTPError(429, "slow down"))
    assert not cmems.is_transient(HTTPError(403, "connection refused by policy"))  # the status wins over the text


def test_errors_named_permanent_are_never_retried_whatever_they_say() -> None:
    DatasetNotFound = type("DatasetNotFound", (Exception,), {})  # the toolbox's class name
    assert not cmems.is_transient(DatasetNotFound("503 temporarily unavailable"))
    assert set(cmems.PERMANENT_ERRORS) >= {"InvalidUsernameOrPassword", "DatasetNotFound", "ProductNotFound"}


def test_keys_and_ids_name_the_dataset_and_the_day() -> None:
    day = datetime(2024, 2, 29, 18, tzinfo=UTC)
    assert cmems.store_key(cmems.DEFAULT_DATASET, day) == (
        "forcing/cmems/cmems_mod_glo_phy-cur_anfc_0.083deg_PT6H-i/20240229.nc")
    assert cmems.file_id(cmems.DEFAULT_DATASET, day) == "cmems.cmems_mod_glo_phy-cur_anfc_0.083deg_PT6H-i.20240229"
    assert cmems.VARIABLES == ("uo", "vo")


def test_variables_are_needed() -> None:
    assert cmems.check_variables(["uo"]) == ("uo",)
    with pytest.raises(InvalidInput, match="at least one variable"):
        cmems.check_variables([])
