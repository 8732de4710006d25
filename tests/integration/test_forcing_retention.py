"""Retention by valid time: rows and files go together; the latest complete forecast always stays."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from forcing_support import FAST, HISTORY, LATEST, NOW, config, gfs_server, naive, open_services, write_gfs
from sqlalchemy import select

from earthkeep.catalog.tables import Item, Run
from earthkeep.forcing.collect import collect_wind
from earthkeep.forcing.retention import cleanup
from earthkeep.forcing.tables import AggregatorDataset
from earthkeep.testbed import gfs


def _state(services, store: Path) -> tuple[set[str], set[str], set[str]]:
    with services.sessions() as s:
        items = set(s.scalars(select(Item.item_id).where(Item.collection == "gfs-wind")))
        rows = set(s.scalars(select(AggregatorDataset.file_path)))
    files = {p.relative_to(store).as_posix() for p in store.rglob("*.grib2")}
    return items, rows, files


def test_cleanup_keeps_latest_complete_forecast_even_when_upstream_is_down(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "gfs"
    newer = LATEST + timedelta(hours=6)
    write_gfs(root, cycles=[LATEST, *HISTORY])
    with gfs_server(root) as (url, _):
        services = open_services(db_url, tmp_path, url)
        cfg = config(services)
        assert asyncio.run(collect_wind(services, cfg, now=NOW, retry=FAST)).status == "completed"
        # A newer cycle is half collected: its f006 fails, so it is not a complete forecast.
        write_gfs(root, cycles=[newer])
        gfs.grib_path(root, naive(newer), 6, "1p00").unlink()
        assert asyncio.run(collect_wind(services, cfg, now=NOW + timedelta(hours=6), history=False,
                                        retry=FAST)).status == "failed"
    store = tmp_path / "store"
    items, rows, files = _state(services, store)
    assert len(items) == len(rows) == len(files) == 9
    # Upstream has been down for ten days; MAX_DATA_AGE_DAYS is 2.
    later = NOW + timedelta(days=10)
    plan = asyncio.run(cleanup(services, cfg, now=later, dry_run=True))
    assert _state(services, store) == (items, rows, files)  # a dry run changes nothing
    stats = asyncio.run(cleanup(services, cfg, now=later))
    left, left_rows, left_files = _state(services, store)
    latest = {f"gfs.{LATEST:%Y%m%d.%H}.1p00.f{h:03d}" for h in (0, 3, 6)}
    assert left == latest and stats["protected"] == 3 and stats["delete"] == 6 == plan["delete"]
    assert len(left_rows) == len(left_files) == 3 and left_rows == left_files
    assert stats["latest_forecast"]["gfs-wind"] == LATEST.isoformat()
    with services.sessions() as s:
        run = s.scalars(select(Run).where(Run.source == "forcing-cleanup")).one()
    assert run.status == "completed" and run.records_collected == 6 and run.details["protected"] == 3
    # Still nothing newer: cleaning again keeps the last good forecast.
    asyncio.run(cleanup(services, cfg, now=later + timedelta(days=30)))
    assert _state(services, store)[0] == latest
