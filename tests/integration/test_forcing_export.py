"""Using the data: open_dataset, the CF NetCDF export OpenDrift reads, the API and the CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from fastapi.testclient import TestClient
from forcing_support import FAST, HISTORY, LATEST, NOW, config, gfs_server, naive, open_services
from sqlalchemy import select
from typer.testing import CliRunner

from earthkeep.api.app import create_app
from earthkeep.api.routers.forcing import router
from earthkeep.apikeys import create_key
from earthkeep.catalog.tables import Asset, Item
from earthkeep.cli.forcing import app as forcing_cli
from earthkeep.cli.forcing import cleanup as cleanup_command
from earthkeep.forcing import open_dataset
from earthkeep.forcing.collect import collect_wind
from earthkeep.forcing.currents import collect_currents
from earthkeep.forcing.export import write_netcdf
from earthkeep.forcing.tables import AggregatorDataset
from earthkeep.raster.grib import open_wind
from earthkeep.sources import cmems
from earthkeep.testbed import gfs
from earthkeep.testbed.cmems import FakeCopernicus

BBOX = (2.0, 58.0, 8.0, 62.0)
OPENDRIFT = """
import sys
from opendrift.models.oceandrift import OceanDrift
from opendrift.readers import reader_netCDF_CF_generic
wind, currents = (reader_netCDF_CF_generic.Reader(p) for p in sys.argv[1:3])
o = OceanDrift(loglevel=50)
o.add_reader([wind, currents])
o.set_config('general:use_auto_landmask', False)
o.set_config('environment:constant:land_binary_mask', 0)
o.seed_elements(lon=5.0, lat=60.0, number=3, time=wind.start_time, wind_drift_factor=0.03)
o.run(steps=6, time_step=3600)
print(sorted(wind.variables), sorted(currents.variables))
print(float(o.elements.lon.mean()), float(o.elements.lat.mean()))
"""


@pytest.fixture
def collected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """18 UTC (seed 1) collected as the latest, then 00 UTC (seed 0): valid time 00 UTC is in both."""
    monkeypatch.setattr(cmems, "subset", FakeCopernicus())
    root = tmp_path / "gfs"
    gfs.write_tree(root, [naive(HISTORY[0])], [0, 3, 6], grid="1p00", packing="ccsds", seed=1)
    with gfs_server(root) as (url, _):
        services = open_services(
            f"sqlite:///{tmp_path}/catalog.db",
            tmp_path,
            url,
            bbox=[4, 59, 6, 61],
            forcing={"copernicus_username": "u", "copernicus_password": "p"},
        )
        cfg = config(services)
        for now, seed in ((NOW - timedelta(hours=6), None), (NOW, 0)):
            if seed is not None:
                gfs.write_tree(root, [naive(LATEST)], [0, 3, 6], grid="1p00", packing="ccsds", seed=seed)
            assert asyncio.run(collect_wind(services, cfg, now=now, history=False, retry=FAST)).status == "completed"
        assert asyncio.run(collect_currents(services, cfg, now=NOW)).status == "completed"
    return services, root


def test_open_dataset_merges_cycles_preferring_the_freshest(collected) -> None:
    services, root = collected
    ds = open_dataset("wind", HISTORY[0], LATEST + timedelta(hours=6), BBOX, services=services)
    hours = (ds["time"].values - np.datetime64(naive(HISTORY[0]))) / np.timedelta64(1, "h")
    assert hours.tolist() == [0, 3, 6, 9, 12]
    assert ds["x_wind"].attrs["standard_name"] == "eastward_wind" and ds["lat"].attrs["units"] == "degrees_north"
    assert ds["lon"].values.tolist() == [2, 3, 4, 5, 6, 7, 8] and ds["lat"].values[0] < ds["lat"].values[-1]
    fresh = open_wind(gfs.grib_path(root, naive(LATEST), 0, "1p00")).sel(latitude=60, longitude=5)
    stale = open_wind(gfs.grib_path(root, naive(HISTORY[0]), 6, "1p00")).sel(latitude=60, longitude=5)
    got = float(ds["x_wind"].sel(time=naive(LATEST), lat=60, lon=5))
    assert got == pytest.approx(float(fresh["u10"].squeeze()), abs=1e-4)
    assert got != pytest.approx(float(stale["u10"].squeeze()), abs=1e-4)


def test_export_is_read_by_opendrift(collected, tmp_path: Path) -> None:
    services, _ = collected
    start, end = HISTORY[0], LATEST + timedelta(hours=6)
    wind = write_netcdf(open_dataset("wind", start, end, BBOX, services=services), tmp_path / "wind.nc")
    currents = write_netcdf(
        open_dataset("currents", start, end, (4, 59, 6, 61), services=services), tmp_path / "currents.nc"
    )
    with xr.open_dataset(currents) as ds:
        assert ds["uo"].attrs["standard_name"] == "eastward_sea_water_velocity" and ds.sizes["time"] == 3
    # OpenDrift in its own process: eccodes (loaded here) and pyproj bundle clashing PROJ libraries.
    done = subprocess.run(
        [sys.executable, "-c", OPENDRIFT, str(wind), str(currents)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    variables, position = done.stdout.strip().splitlines()[-2:]
    assert "'x_wind'" in variables and "'x_sea_water_velocity'" in variables
    lon, lat = (float(v) for v in position.split())
    assert (lon, lat) != (5.0, 60.0) and abs(lon - 5) < 1 and abs(lat - 60) < 1


def test_api_lists_filters_serves_and_exports(collected, tmp_path: Path) -> None:
    services, _ = collected
    app = create_app(services=services)
    app.include_router(router)
    with TestClient(app) as client:
        all_rows = client.get("/forcing/datasets").json()
        wind = client.get("/forcing/datasets", params={"data_type": "wind", "is_forecast": "false"}).json()
        window = client.get(
            "/forcing/datasets",
            params={"data_type": "wind", "start": "2024-01-02T00:00:00Z", "end": "2024-01-02T03:00:00Z"},
        ).json()
        row = window[0]
        served = client.get(row["href"])
        bad = client.get("/forcing/datasets/not-a-uuid/file")
        export = client.get(
            "/forcing/export",
            params={
                "start": "2024-01-01T18:00:00Z",
                "end": "2024-01-02T06:00:00Z",
                "bbox": "2,58,8,62",
                "kind": "wind",
            },
        )
        refused = client.post("/forcing/collect")
        with services.sessions.begin() as s:
            _, secret = create_key(s, "ops", ["admin"])
        accepted = client.post("/forcing/collect", headers={"Authorization": f"Bearer {secret}"})
    assert len(all_rows) == 6 + 6 and {r["data_type"] for r in all_rows} == {"wind", "ocean_currents"}
    assert {r["is_forecast"] for r in wind} == {False} and len(wind) == 4  # f000/f003 of both cycles
    assert [r["valid_time_start"][:13] for r in window] == ["2024-01-02T00", "2024-01-02T00", "2024-01-02T03"]
    assert window[0]["forecast_date"] > window[1]["forecast_date"]  # freshest first at equal valid time
    assert served.status_code == 200 and served.content[:4] == b"GRIB"
    assert int(served.headers["content-length"]) == row["file_size_bytes"]
    with services.sessions() as s:
        touched = s.get(AggregatorDataset, row["id"])
    assert touched.last_accessed_at is not None and row["last_accessed_at"] is None
    assert bad.status_code == 422 and refused.status_code == 401
    assert accepted.status_code == 202 and accepted.json()["created"] is True
    assert export.status_code == 200
    (tmp_path / "api.nc").write_bytes(export.content)
    with xr.open_dataset(tmp_path / "api.nc") as ds:
        assert ds.sizes["time"] == 5 and ds["y_wind"].attrs["standard_name"] == "northward_wind"


def test_generic_item_download_records_the_access_too(collected) -> None:
    services, _ = collected
    with services.sessions() as s:
        row = s.scalars(select(AggregatorDataset).where(AggregatorDataset.data_type == "wind")).first()
        other = s.scalars(select(AggregatorDataset).where(AggregatorDataset.id != row.id)).first()
        item_id = s.scalars(
            select(Item.item_id).join(Asset, Asset.item_pk == Item.pk).where(Asset.store_key == row.file_path)
        ).one()
    with TestClient(create_app(services=services)) as client:
        served = client.get(f"/items/gfs-wind/{item_id}/assets/data")
    assert served.status_code == 200 and served.content[:4] == b"GRIB"
    with services.sessions() as s:
        assert s.get(AggregatorDataset, row.id).last_accessed_at is not None
        assert s.get(AggregatorDataset, other.id).last_accessed_at is None  # only the file served
        assert s.scalars(select(Item).where(Item.item_id == item_id)).one().last_accessed_at is not None


def test_cli_gaps_export_and_cleanup(collected, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services, _ = collected
    from earthkeep.cli import common

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/catalog.db")
    monkeypatch.setenv("EARTHKEEP_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("MAX_DATA_AGE_DAYS", "1")
    monkeypatch.setattr(common, "STATE", {"config": None, "settings": None})
    runner = CliRunner()
    out = tmp_path / "cli.nc"
    exported = runner.invoke(
        forcing_cli,
        ["export", str(out), "--start", "2024-01-01T18:00", "--end", "2024-01-02T06:00Z", "--bbox", "2,58,8,62"],
    )
    assert exported.exit_code == 0, exported.output
    with xr.open_dataset(out) as ds:
        assert ds.sizes["time"] == 5
    gaps = runner.invoke(forcing_cli, ["gaps"])
    assert gaps.exit_code == 0 and "missing file(s)" in gaps.output  # 2024 is far behind today's series
    import typer

    top = typer.Typer()
    top.command("cleanup")(cleanup_command)
    top.command("noop")(lambda: None)
    before = _count(services)
    dry = runner.invoke(top, ["cleanup", "--dry-run"])
    assert dry.exit_code == 0 and "would delete" in dry.output and _count(services) == before
    done = runner.invoke(top, ["cleanup"])
    assert done.exit_code == 0 and "deleted" in done.output
    assert _count(services) == 3 + 6  # the latest GFS forecast and the latest currents run (6 days) stay
    bad = runner.invoke(forcing_cli, ["export", str(out), "--start", "yesterday", "--end", "2024-01-02"])
    assert bad.exit_code == 2 and "ISO 8601" in bad.output


def _count(services) -> int:
    with services.sessions() as s:
        return len(list(s.scalars(select(AggregatorDataset.id))))


def test_wind_quicklook_png_shows_the_kept_speed_in_web_mercator(collected) -> None:
    import warnings

    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    from earthkeep.forcing.quicklook import _mercator_rows
    from earthkeep.raster.tiles import Style

    services, _ = collected
    with TestClient(create_app(services=services)) as client:
        r = client.get("/forcing/wind.png", params={"valid_time": "2024-01-02T01:00:00Z", "width": 360})
        missing = client.get("/forcing/wind.png", params={"valid_time": "2020-01-01T00:00:00Z"})
        naive_time = client.get("/forcing/wind.png", params={"valid_time": "2024-01-02T00:00:00"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-valid-time"].startswith("2024-01-02T00:00:00")  # the nearest kept valid time
    assert [float(v) for v in r.headers["x-bounds"].split(",")][::2] == [-180.0, 180.0]
    assert missing.status_code == 404 and naive_time.status_code == 422
    with warnings.catch_warnings():  # a PNG carries no georeferencing; X-Bounds does
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(r.content) as mem, mem.open() as png:
            rgba = png.read()
    assert rgba.shape == (4, 360, 360) and (rgba[3] > 0).all()
    ds = open_dataset("wind", LATEST, LATEST, None, services=services)
    lats = _mercator_rows(360)
    row = int(np.argmin(abs(lats - 60.0)))
    col = int((5.0 + 180.0) / 360.0 * 360)
    lat = float(ds["lat"].values[np.clip(np.searchsorted(ds["lat"].values, lats[row]), 0, ds.sizes["lat"] - 1)])
    lon = float(ds["lon"].values[np.clip(np.searchsorted(ds["lon"].values, (col + 0.5) - 180.0), 0,
                                           ds.sizes["lon"] - 1)])
    u = float(ds["x_wind"].isel(time=0).sel(lat=lat, lon=lon))
    v = float(ds["y_wind"].isel(time=0).sel(lat=lat, lon=lon))
    expected = Style(25.0, "viridis").lut()[int(np.clip(np.hypot(u, v) / 25.0 * 255.0, 0, 255))][:3]
    assert tuple(int(c) for c in rgba[:3, row, col]) == tuple(expected)
