"""Faults: 404/500/timeouts, corrupted GRIB, an .idx that lies, concurrent collectors, Copernicus down."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from forcing_support import FAST, HISTORY, LATEST, NOW, config, gfs_server, grib_gets, naive, open_services, write_gfs
from sqlalchemy import select

from earthkeep.catalog.tables import Item, Run
from earthkeep.forcing.collect import collect_all, collect_wind
from earthkeep.forcing.tables import AggregatorCollectionStatus, AggregatorDataset
from earthkeep.jobs.handlers import lease_owner
from earthkeep.sources import cmems
from earthkeep.testbed import gfs
from earthkeep.testbed.cmems import FakeCopernicus, InvalidUsernameOrPassword
from earthkeep.testbed.faults import Fault

OLD_NOW = HISTORY[0] + (NOW - LATEST)


def _item_ids(services) -> set[str]:
    with services.sessions() as s:
        return set(s.scalars(select(Item.item_id).where(Item.collection == "gfs-wind")))


def _path(hour: int) -> str:
    return "/" + gfs.relative_path(naive(LATEST), hour, "1p00")


def _first_then_latest(tmp_path: Path, url: str, **options):
    """Collect the older cycles, then publish LATEST: returns the services and what was there before."""
    services = open_services(f"sqlite:///{tmp_path}/catalog.db", tmp_path, url, **options)
    first = asyncio.run(collect_wind(services, config(services), now=OLD_NOW, retry=FAST))
    assert first.status == "completed", first.error
    write_gfs(tmp_path / "gfs", cycles=[LATEST])
    return services, _item_ids(services)


@pytest.mark.parametrize(("fault", "words"), [
    (Fault("status", status=500, times=None), "500"),
    (Fault("delay", delay_s=1.5, times=None), "timeout"),
])
def test_server_errors_and_timeouts_are_retried_then_fail_the_run(tmp_path: Path, fault: Fault, words: str) -> None:
    write_gfs(tmp_path / "gfs", cycles=HISTORY)
    with gfs_server(tmp_path / "gfs") as (url, injector):
        services, before = _first_then_latest(tmp_path, url, timeout_s=0.5)
        fault.path = _path(6)
        injector.set_faults([fault])
        report = asyncio.run(collect_wind(services, config(services), now=NOW, retry=FAST))
        tries = Counter(r.path for r in injector.records if r.method == "GET")[_path(6)]
    assert report.status == "failed" and words in report.error.lower() and "f006" in report.error
    assert tries == 3  # the first attempt and two retries (EARTHKEEP_RETRIES=2)
    after = _item_ids(services)
    assert before < after and f"gfs.{LATEST:%Y%m%d.%H}.1p00.f006" not in after  # older data stays
    with services.sessions() as s:
        run = s.get(Run, report.run_id)
        status = s.get(AggregatorCollectionStatus, report.run_id)
    assert (run.status, status.status) == ("failed", "failed") and status.error_message == run.error_message


def test_missing_file_behind_its_idx_fails_with_404(tmp_path: Path) -> None:
    write_gfs(tmp_path / "gfs", cycles=HISTORY)
    with gfs_server(tmp_path / "gfs") as (url, _):
        services, before = _first_then_latest(tmp_path, url)
        gfs.grib_path(tmp_path / "gfs", naive(LATEST), 3, "1p00").unlink()
        report = asyncio.run(collect_wind(services, config(services), now=NOW, retry=FAST))
    assert report.status == "failed" and "404" in report.error and "f003" in report.error
    assert before < _item_ids(services)


@pytest.mark.parametrize("damage", ["corrupt", "mismatched_idx"])
def test_corrupted_grib_or_lying_idx_is_rejected(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "gfs"
    write_gfs(root, cycles=[LATEST])
    target = gfs.grib_path(root, naive(LATEST), 3, "1p00")
    if damage == "corrupt":
        gfs.add_hour(root, naive(LATEST), 3, grid="1p00", packing="complex")
        gfs.corrupt_file(target)
    else:
        gfs.write_mismatched_idx(target)
    with gfs_server(root) as (url, _):
        services = open_services(f"sqlite:///{tmp_path}/catalog.db", tmp_path, url)
        report = asyncio.run(collect_wind(services, config(services), now=NOW, history=False, retry=FAST))
    bad = f"gfs.{LATEST:%Y%m%d.%H}.1p00.f003"
    assert report.status == "failed" and bad in report.error
    assert bad not in _item_ids(services) and len(_item_ids(services)) == 2
    with services.sessions() as s:
        assert not [r for r in s.scalars(select(AggregatorDataset)) if "f003" in (r.file_path or "")]
    assert not list((tmp_path / "store").rglob("*f003*"))


def test_two_collectors_at_once_fetch_each_file_once(tmp_path: Path, db_url: str) -> None:
    write_gfs(tmp_path / "gfs")
    with gfs_server(tmp_path / "gfs") as (url, injector):
        injector.set_faults([Fault("delay", path="*.f0*", delay_s=0.3, times=None)])
        db = db_url
        one, two = (open_services(db, tmp_path, url) for _ in range(2))

        async def both():
            return await asyncio.gather(*(collect_wind(s, config(s), now=NOW, retry=FAST) for s in (one, two)))

        reports = asyncio.run(both())
    fetched = Counter(grib_gets(injector))
    assert fetched and max(fetched.values()) == 1
    assert all(r.status == "completed" for r in reports)
    assert sum(r.records for r in reports) == len(fetched) == len(_item_ids(one)) == 7
    assert sum(r.details["counts"].get("claimed", 0) + r.details["counts"].get("present", 0) for r in reports) == 7


def test_copernicus_failure_does_not_stop_gfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCopernicus()
    fake.fail_next([InvalidUsernameOrPassword("invalid username or password")])
    monkeypatch.setattr(cmems, "subset", fake)
    write_gfs(tmp_path / "gfs", cycles=[LATEST])
    with gfs_server(tmp_path / "gfs") as (url, _):
        services = open_services(f"sqlite:///{tmp_path}/catalog.db", tmp_path, url, bbox=[0, 40, 2, 42],
                                 forcing={"copernicus_username": "someone", "copernicus_password": "secret"})
        reports = asyncio.run(collect_all(services, config(services), now=NOW, history=False))
    by_source = {r.source: r for r in reports}
    assert by_source["noaa_gfs"].status == "completed" and len(_item_ids(services)) == 3
    assert by_source["copernicus"].status == "failed"
    assert "InvalidUsernameOrPassword" in by_source["copernicus"].error


def test_bytes_corrupted_in_flight_are_rejected(tmp_path: Path) -> None:
    root = tmp_path / "gfs"
    write_gfs(root, cycles=[LATEST])
    with gfs_server(root) as (url, injector):
        # Flip 64 bytes in the middle of the packed u10 values of f006's range answer, every time.
        injector.set_faults([Fault("corrupt", path=_path(6), ranged=True, after_bytes=40_000, count=64, times=None)])
        services = open_services(f"sqlite:///{tmp_path}/catalog.db", tmp_path, url)
        report = asyncio.run(collect_wind(services, config(services), now=NOW, history=False, retry=FAST))
    assert report.status == "failed" and "f006" in report.error
    assert f"gfs.{LATEST:%Y%m%d.%H}.1p00.f006" not in _item_ids(services) and len(_item_ids(services)) == 2


def test_a_retry_takes_over_the_claims_and_run_of_its_killed_attempt(tmp_path: Path) -> None:
    """kill -9 mid-collection leaves file claims (TTL 15 min) and a "running" run; the job's retry must not skip."""
    from earthkeep.forcing import claims
    from earthkeep.forcing.records import begin_run

    write_gfs(tmp_path / "gfs", cycles=[LATEST])
    with gfs_server(tmp_path / "gfs") as (url, _):
        services = open_services(f"sqlite:///{tmp_path}/catalog.db", tmp_path, url)
        cfg = config(services)
        with services.sessions.begin() as s:
            dead_run = begin_run(s, "noaa_gfs", "wind", job_id=7)
        ids = [f"gfs.{LATEST:%Y%m%d.%H}.{cfg.sources.gfs_grid}.f{h:03d}" for h in cfg.forecast_hours]
        assert claims.claim_many(services.engine, ids, lease_owner(7), 900) == set(ids)
        report = asyncio.run(collect_wind(services, cfg, now=NOW, history=False, retry=FAST, job_id=7))
    assert report.status == "completed" and report.records == len(ids) == len(_item_ids(services)), report
    with services.sessions() as s:
        assert s.get(Run, dead_run).status == "failed" and "interrupted" in s.get(Run, dead_run).error_message
        assert s.get(AggregatorCollectionStatus, dead_run).status == "failed"
