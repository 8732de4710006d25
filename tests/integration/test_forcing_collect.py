"""GFS collection end to end against the emulated tree: latest complete cycle, byte ranges, records."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path

from forcing_support import (
    FAST,
    HISTORY,
    HOURS,
    LATEST,
    NOW,
    config,
    gfs_server,
    grib_gets,
    naive,
    open_services,
    write_gfs,
)
from sqlalchemy import func, select

from earthkeep.catalog.tables import Item, Run
from earthkeep.forcing.collect import collect_wind, gap_report
from earthkeep.forcing.tables import AggregatorCollectionStatus, AggregatorDataset
from earthkeep.raster.grib import check_grib, open_wind
from earthkeep.testbed import gfs
from earthkeep.testbed.faults import Fault
from earthkeep.transfer.idx import byte_ranges, parse_idx
from earthkeep.transfer.idx import select as idx_select

WIND = [":UGRD:10 m above ground:", ":VGRD:10 m above ground:"]


def _wanted_bytes(root: Path, cycle, hour) -> int:
    path = gfs.grib_path(root, naive(cycle), hour, "1p00")
    entries = parse_idx(gfs.idx_path(root, naive(cycle), hour, "1p00").read_text())
    ranges = byte_ranges(entries, idx_select(entries, WIND), file_size=path.stat().st_size)
    return sum(b - a + 1 for a, b in ranges)


def test_collects_latest_cycle_and_history_by_ranges(db_url: str, tmp_path: Path) -> None:
    write_gfs(tmp_path / "gfs")
    with gfs_server(tmp_path / "gfs") as (url, injector):
        services = open_services(db_url, tmp_path, url)
        report = asyncio.run(collect_wind(services, config(services), now=NOW, retry=FAST))
    assert report.status == "completed", report.error
    expected = {(LATEST, h) for h in HOURS} | {(c, h) for c in HISTORY[:2] for h in (0, 3)}
    with services.sessions() as s:
        items = {i.item_id: i for i in s.scalars(select(Item).where(Item.collection == "gfs-wind"))}
        rows = {r.file_path: r for r in s.scalars(select(AggregatorDataset))}
        status = s.scalars(select(AggregatorCollectionStatus)).one()
        run = s.get(Run, report.run_id)
    assert set(items) == {f"gfs.{c:%Y%m%d.%H}.1p00.f{h:03d}" for c, h in expected}
    assert report.records == len(expected) == len(rows)
    assert (status.collection_id, status.status, status.records_collected) == (run.id, "completed", len(expected))
    # Only the two wanted messages travelled, byte for byte (adjacent ranges merged into one request per file).
    wanted = sum(_wanted_bytes(tmp_path / "gfs", c, h) for c, h in expected)
    grib_requests = grib_gets(injector)
    assert len(grib_requests) == len(expected)
    assert sum(r.body_bytes for r in injector.records if r.path in grib_requests) == wanted
    # No probe at all: finding the complete cycle reads the inventories, which then plan the ranges
    # (no second request), and a range known from its .idx needs no HEAD: one GET per .idx and per file.
    assert not [r for r in injector.records if r.method == "HEAD"]
    idx_gets = Counter(r.path for r in injector.records if r.method == "GET" and r.path.endswith(".idx"))
    assert set(idx_gets.values()) == {1} and len(idx_gets) >= len(expected)
    # Each stored file decodes to exactly u10/v10 on the grid; rows match their objects.
    item = items[f"gfs.{LATEST:%Y%m%d.%H}.1p00.f006"]
    path = tmp_path / "store" / item.assets[0].store_key
    check_grib(path, grid="1p00")
    assert set(open_wind(path).data_vars) == {"u10", "v10"}
    row = rows[item.assets[0].store_key]
    assert (row.data_type, row.source, row.forecast_cycle, row.is_forecast) == ("wind", "noaa_gfs", "00", True)
    assert row.valid_time_start == LATEST + timedelta(hours=6) and row.file_size_bytes == path.stat().st_size
    analysis = rows[items[f"gfs.{LATEST:%Y%m%d.%H}.1p00.f003"].assets[0].store_key]
    assert analysis.is_forecast is False


def test_incomplete_latest_cycle_is_not_taken(db_url: str, tmp_path: Path) -> None:
    newer = LATEST + timedelta(hours=6)
    # 06 UTC is being published (f000 only; f003's GRIB is there without .idx); 00 UTC lacks f006 entirely.
    write_gfs(tmp_path / "gfs", cycles=[newer, LATEST, HISTORY[0]], complete={newer: False, LATEST: [6]})
    with gfs_server(tmp_path / "gfs") as (url, injector):
        services = open_services(db_url, tmp_path, url)
        report = asyncio.run(
            collect_wind(services, config(services), now=newer + timedelta(hours=7), history=False, retry=FAST)
        )
    assert report.status == "completed", report.error
    assert report.details["cycle"] == HISTORY[0].isoformat()
    assert not [p for p in grib_gets(injector) if "/06/" in p or "gfs.20240102" in p]


def test_second_run_downloads_nothing_and_gaps_are_reported(db_url: str, tmp_path: Path) -> None:
    write_gfs(tmp_path / "gfs", complete={HISTORY[1]: [3]})  # 12 UTC f003 never published
    with gfs_server(tmp_path / "gfs") as (url, injector):
        services = open_services(db_url, tmp_path, url)
        cfg = config(services)
        asyncio.run(collect_wind(services, cfg, now=NOW, retry=FAST))
        injector.clear()
        again = asyncio.run(collect_wind(services, cfg, now=NOW, retry=FAST))
    assert grib_gets(injector) == []
    assert again.details["counts"].get("stored", 0) == 0
    # The latest forecast is complete: the unfillable history file is reported, not fatal.
    assert again.status == "completed" and "1 of 4 history files failed" in again.error
    gaps = {g.file_id: g for g in gap_report(services, cfg, now=NOW)}
    missing = f"gfs.{HISTORY[1]:%Y%m%d.%H}.1p00.f003"
    assert missing in gaps and "failed after" in gaps[missing].reason and "404" in gaps[missing].reason
    with services.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Run).where(Run.records_failed == 1)) == 2


def test_startup_hook_enqueues_one_collection_that_a_worker_runs(tmp_path: Path, monkeypatch) -> None:
    from datetime import UTC, datetime

    from earthkeep.forcing.domain import on_startup
    from earthkeep.jobs.worker import Worker
    from earthkeep.sources.gfs import floor_cycle

    monkeypatch.delenv("COPERNICUS_USERNAME", raising=False)
    cycle = floor_cycle(datetime.now(UTC)) - timedelta(hours=6)
    write_gfs(tmp_path / "gfs", cycles=[cycle])
    with gfs_server(tmp_path / "gfs") as (url, _):
        services = open_services(f"sqlite:///{tmp_path}/c.db", tmp_path, url, forcing={"historical_days": 0})
        job_id = on_startup(services)
        assert on_startup(services) == job_id  # deduplicated while pending

        async def work() -> str:
            stop = asyncio.Event()
            worker = Worker(services.queue, services.registry, services, poll_s=0.05)
            task = asyncio.create_task(worker.run(stop))
            while (status := (await asyncio.to_thread(services.queue.get, job_id)).status) in ("pending", "running"):
                await asyncio.sleep(0.05)
            stop.set()
            await task
            return status

        assert asyncio.run(work()) == "completed"
    job = services.queue.get(job_id)
    assert job.result["noaa_gfs"]["status"] == "completed" and job.result["noaa_gfs"]["records"] == 3
    assert job.result["copernicus"]["status"] == "skipped"


def test_cli_collect_reports_each_source(tmp_path: Path, monkeypatch) -> None:
    from datetime import UTC, datetime

    from typer.testing import CliRunner

    from earthkeep.cli import common
    from earthkeep.cli.forcing import app
    from earthkeep.sources.gfs import floor_cycle

    cycle = floor_cycle(datetime.now(UTC)) - timedelta(hours=6)
    write_gfs(tmp_path / "gfs", cycles=[cycle])
    with gfs_server(tmp_path / "gfs") as (url, injector):
        env = {
            "DATABASE_URL": f"sqlite:///{tmp_path}/c.db",
            "EARTHKEEP_STORE_DIR": str(tmp_path / "store"),
            "EARTHKEEP_PARTIAL_DIR": str(tmp_path / "partial"),
            "FORECAST_HOURS": "6",
            "HISTORICAL_DAYS": "0",
            "FORCING_GFS_MIRRORS": "aws",
            "FORCING_GFS_AWS_URL": url,
            "FORCING_GFS_GRID": "1p00",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("COPERNICUS_USERNAME", raising=False)
        monkeypatch.setattr(common, "STATE", {"config": None, "settings": None})
        done = CliRunner().invoke(app, ["collect"])
        assert done.exit_code == 0, done.output
        assert "noaa_gfs" in done.output and "completed" in done.output and "skipped" in done.output
        assert len(grib_gets(injector)) == 3
        injector.set_faults([Fault("status", status=500, methods=("GET", "HEAD"), times=None)])
        monkeypatch.setattr(common, "STATE", {"config": None, "settings": None})
        monkeypatch.setenv("EARTHKEEP_RETRIES", "0")
        failed = CliRunner().invoke(app, ["collect", "--no-currents"])
    assert failed.exit_code == 1 and "failed" in failed.output and "500" in failed.output
