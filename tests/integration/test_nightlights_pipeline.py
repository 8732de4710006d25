"""Nightlights end to end on SQLite and PostgreSQL: LAADS emulator, Earth Engine stand-in, uploads.

The worker, the transfer engine, the store and the processing are the real ones;
only the remote providers are loopback stand-ins (``earthkeep.testbed.laads``,
``earthkeep.testbed.earthengine``).
"""

from datetime import date

import numpy as np
import pytest
from exactextract import exact_extract
from nl_support import MOMBASA, NAIROBI, TOKEN, add_area, open_services, run_workers
from rasterio.io import MemoryFile
from shapely.geometry import Polygon, mapping, shape
from sqlalchemy import func, select

from earthkeep.catalog.items import get_item
from earthkeep.catalog.tables import Item
from earthkeep.errors import InvalidInput
from earthkeep.nightlights import requests
from earthkeep.nightlights.results import timeseries
from earthkeep.nightlights.tables import Result
from earthkeep.nightlights.uploads import submit_upload
from earthkeep.raster.grid import snap
from earthkeep.sources import blackmarble
from earthkeep.store.obstore import ObstoreStore
from earthkeep.testbed import create_file_app, serve_app
from earthkeep.testbed.earthengine import EarthEngineStandIn
from earthkeep.testbed.laads import LaadsArchive, Scene, expected_on_grid

SCENE = Scene(always_cloudy=(36.95, -1.15, 37.05, -1.05))


@pytest.fixture
def laads(tmp_path):
    archive = LaadsArchive(tmp_path / "laads", token=TOKEN, scene=SCENE, tile_size=240)
    with serve_app(archive.app()) as base:
        archive.base_url = base
        yield archive


@pytest.fixture
def svc(db_url, tmp_path, laads):
    s = open_services(db_url, tmp_path, ObstoreStore.local(tmp_path / "store"), laads_url=laads.base_url)
    yield s
    s.close()


def _expected_metrics(coords, month, res):
    """exactextract's own statistics on the known-correct composite (independent of earthkeep's path)."""
    geom = Polygon(coords[0])
    grid = snap(geom.bounds, res)
    y, m = (int(v) for v in month.split("-"))
    values = expected_on_grid(SCENE, grid.west, grid.north, grid.res, grid.width, grid.height, date(y, m, 1))
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1, "dtype": "float32",
               "crs": "EPSG:4326", "transform": grid.transform, "nodata": np.nan}
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(values, 1)
        with mem.open() as ds:
            feat = {"type": "Feature", "properties": {"fid": 0}, "geometry": mapping(geom)}
            return exact_extract(ds, [feat], ["sum", "mean", "median"], output="pandas").iloc[0]


async def test_laads_months_become_metrics_equal_to_exactextract_on_the_truth(svc, laads):
    area = add_area(svc, NAIROBI, "Nairobi")
    req = requests.submit(svc, area, "2023-01", "2023-03", trace_id="trace-nl-1")
    assert len(req.acquisition_job_ids) == 3
    [status] = await run_workers(svc, [req.id])
    assert status["status"] == "completed", status
    assert [m["acquisition"]["kind"] for m in status["months"]] == ["laads_download"] * 3
    assert status["etl_processing"]["kind"] == "etl_processing" and status["trace_id"] == "trace-nl-1"
    with svc.sessions() as s:
        rows = timeseries(s, area)
    assert [r["month"] for r in rows] == ["2023-01", "2023-02", "2023-03"]
    for r in rows:
        ref = _expected_metrics(NAIROBI, r["month"], 10 / 240)
        assert r["sum_radiance"] == pytest.approx(ref["sum"], rel=1e-5)
        assert r["mean_radiance"] == pytest.approx(ref["mean"], rel=1e-5)
        assert r["median_radiance"] == pytest.approx(ref["median"], rel=1e-5)
        assert 0.9 < r["valid_fraction"] < 1.0  # the always-cloudy corner has no valid night
        assert 15 <= r["mean_valid_nights"] <= 31  # 0 in the always-cloudy corner, ~70 % of nights elsewhere
    assert rows[2]["change_vs_first_pct"] == pytest.approx(100 * (1.02**2 - 1), abs=0.3)
    key = f"nightlights/composites/{area}/2023-02.tif"
    assert await svc.store.exists(key)
    with svc.sessions() as s:
        composite = get_item(s, "nightlights-composites", f"area-{area}-2023-02")
        assert composite.assets[0].store_key == key
        assert shape(composite.geometry).equals(Polygon(NAIROBI[0]))  # the area: the footprint STAC tests
        assert get_item(s, "VNP46A2", "VNP46A2.A2023032.h21v09.002.2024060101010").assets


async def test_two_areas_share_downloaded_tiles_and_a_second_request_reuses_them(svc, laads):
    a = add_area(svc, NAIROBI, "Nairobi")
    b = add_area(svc, MOMBASA, "Mombasa")
    r1 = requests.submit(svc, a, "2023-02", "2023-02")
    r2 = requests.submit(svc, b, "2023-02", "2023-02")
    statuses = await run_workers(svc, [r1.id, r2.id], workers=2)
    assert [s["status"] for s in statuses] == ["completed", "completed"]
    h21 = [p for p in laads.downloads() if ".h21v09." in p]
    h22 = [p for p in laads.downloads() if ".h22v09." in p]
    assert len(h21) == len(set(h21)) == 28 and len(h22) == 28  # h21v09 once for both areas
    assert not [p for p in laads.downloads() if ".h05v05." in p]  # the decoy tile is never fetched
    r3 = requests.submit(svc, a, "2023-02", "2023-02")
    [st] = await run_workers(svc, [r3.id])
    assert st["status"] == "completed" and st["months"][0]["acquisition"]["result"]["downloaded"] == 0
    assert len(laads.downloads()) == 56


async def test_tiles_stored_by_a_worker_killed_before_cataloguing_them_are_catalogued_by_the_next_job(svc, laads):
    """Found by tests/e2e/test_cluster.py: a job that finds a tile stored skipped it, so when the worker that stored
    it was SIGKILLed before cataloguing the month, the tile's item was never written (86 of 91 items)."""
    area = add_area(svc, NAIROBI, "Nairobi")
    [st] = await run_workers(svc, [requests.submit(svc, area, "2023-02", "2023-02").id])
    assert st["status"] == "completed"
    with svc.sessions.begin() as s:
        items = s.scalars(select(Item).where(Item.collection == "VNP46A2")).all()
        expected = {i.item_id: [(a.store_key, a.size, a.sha256) for a in i.assets] for i in items}
        for item in items[::3]:  # what the dead worker stored but never catalogued
            s.delete(item)
    assert len(expected) == 28
    [st] = await run_workers(svc, [requests.submit(svc, area, "2023-02", "2023-02").id])
    assert st["status"] == "completed" and st["months"][0]["acquisition"]["result"]["downloaded"] == 0
    with svc.sessions() as s:
        items = s.scalars(select(Item).where(Item.collection == "VNP46A2")).all()
        assert {i.item_id: [(a.store_key, a.size, a.sha256) for a in i.assets] for i in items} == expected

async def test_missing_token_fails_the_job_naming_the_variable(db_url, tmp_path, laads):
    svc = open_services(db_url, tmp_path, ObstoreStore.local(tmp_path / "store"), laads_url=laads.base_url,
                        earthdata_token=None)
    try:
        req = requests.submit(svc, add_area(svc), "2023-01", "2023-01")
        [st] = await run_workers(svc, [req.id])
        assert st["status"] == "failed"
        acq = st["months"][0]["acquisition"]
        assert acq["status"] == "failed" and acq["attempts"] == 1
        assert "ConfigError: EARTHDATA_TOKEN is not set" in acq["error"]
        assert "EARTHDATA_TOKEN is not set" in st["etl_processing"]["error"]
        with svc.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Result)) == 0
    finally:
        svc.close()


async def test_a_corrupt_tile_fails_processing_with_the_reason_and_stores_no_metrics(svc, laads):
    bad = blackmarble.granule_name(date(2023, 1, 10), 21, 9, production="2024060101010")
    laads.corrupt = {bad}
    area = add_area(svc)
    req = requests.submit(svc, area, "2023-01", "2023-01")
    [st] = await run_workers(svc, [req.id])
    assert st["status"] == "failed" and st["months"][0]["acquisition"]["status"] == "completed"
    error = st["etl_processing"]["error"]
    assert f"{bad} is not a readable HDF5 file" in error and "nothing stored" in error
    assert st["etl_processing"]["attempts"] == 1  # permanent: not retried
    with svc.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Result)) == 0
    assert not await svc.store.exists(f"nightlights/composites/{area}/2023-01.tif")
    assert not await svc.store.exists(f"nightlights/raw/VNP46A2/5200/2023/010/{bad}")  # fetched again next time


def test_reversed_future_and_unknown_requests_are_refused(svc):
    area = add_area(svc)
    with pytest.raises(InvalidInput, match=r"reversed"):
        requests.submit(svc, area, "2023-05", "2023-01")
    with pytest.raises(InvalidInput, match=r"has not ended yet"):
        requests.submit(svc, area, "2023-01", "2999-01")
    with pytest.raises(InvalidInput, match=r"unknown source 'ftp'"):
        requests.submit(svc, area, "2023-01", "2023-01", source="ftp")
    assert svc.queue.counts()["pending"] == 0


@pytest.fixture
def earth_engine(tmp_path, monkeypatch):
    """The Earth Engine stand-in, substituted at the one adapter function and nowhere else."""
    served = tmp_path / "ee"
    served.mkdir()
    with serve_app(create_file_app(served)) as base:
        stand_in = EarthEngineStandIn(SCENE, served, base)
        monkeypatch.setattr(blackmarble, "earth_engine_download_url", stand_in)
        yield stand_in


async def test_earth_engine_exports_are_processed(db_url, tmp_path, earth_engine):
    svc = open_services(db_url, tmp_path, ObstoreStore.local(tmp_path / "store"), ee_service_account="svc@x",
                        ee_key_file=str(tmp_path / "key.json"))
    try:
        area = add_area(svc, NAIROBI)
        req = requests.submit(svc, area, "2023-01", "2023-02", source="earth_engine")
        [st] = await run_workers(svc, [req.id])
        assert st["status"] == "completed", st
        call = earth_engine.calls[0]
        assert call.band == "DNB_BRDF_Corrected_NTL" and call.dimensions == (120, 120)
        assert call.start == "2023-01-01" and call.end == "2023-02-01"
        with svc.sessions() as s:
            rows = timeseries(s, area)
        ref = _expected_metrics(NAIROBI, "2023-01", 10 / 2400)
        assert rows[0]["source"] == "earth_engine_export"
        assert rows[0]["sum_radiance"] == pytest.approx(ref["sum"], rel=1e-5)
        assert rows[0]["mean_valid_nights"] is None
    finally:
        svc.close()


async def test_earth_engine_without_credentials_or_with_a_corrupt_export_fails(db_url, tmp_path, earth_engine):
    svc = open_services(db_url, tmp_path, ObstoreStore.local(tmp_path / "store"), ee_service_account="svc@x")
    try:
        area = add_area(svc)
        req = requests.submit(svc, area, "2023-01", "2023-01", source="earth_engine_export")
        [st] = await run_workers(svc, [req.id])
        assert "EARTHENGINE_KEY_FILE is not set" in st["months"][0]["acquisition"]["error"]
        assert earth_engine.calls == []
        svc.use_settings(requests.nl_settings(svc).model_copy(update={"ee_key_file": str(tmp_path / "key.json")}))
        earth_engine.corrupt = True
        req = requests.submit(svc, area, "2023-01", "2023-01", source="earth_engine_export")
        [st] = await run_workers(svc, [req.id])
        assert st["status"] == "failed"
        assert "earth_engine.tif is not a readable GeoTIFF" in st["etl_processing"]["error"]
        with svc.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Result)) == 0
    finally:
        svc.close()


async def test_an_uploaded_geotiff_is_processed_and_a_corrupt_one_refused(svc, tmp_path):
    area = add_area(svc, NAIROBI)
    grid = snap(Polygon(NAIROBI[0]).bounds)
    data = np.full(grid.shape, 2.0, dtype=np.float32)
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1, "dtype": "float32",
               "crs": "EPSG:4326", "transform": grid.transform, "nodata": -1.0}
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data, 1)
        tiff = mem.read()
    with pytest.raises(InvalidInput, match=r"not a readable GeoTIFF"):
        await submit_upload(svc, area, "2023-04", tiff[:200])
    with pytest.raises(InvalidInput, match=r"has not ended yet"):
        await submit_upload(svc, area, "2999-04", tiff)
    req = await submit_upload(svc, area, "2023-04", tiff)
    [st] = await run_workers(svc, [req.id])
    assert st["status"] == "completed" and st["source"] == "upload"
    with svc.sessions() as s:
        [row] = timeseries(s, area)
    assert row["mean_radiance"] == pytest.approx(2.0) and row["lit_fraction"] == pytest.approx(1.0)
    assert row["valid_fraction"] == pytest.approx(1.0)
