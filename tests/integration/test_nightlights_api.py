"""The nightlights HTTP API on SQLite and PostgreSQL (PostGIS): areas, jobs, results, uploads, tiles."""

import csv
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from nl_support import NAIROBI, open_services
from rasterio.io import MemoryFile
from shapely.geometry import Polygon
from sqlalchemy import text

from earthkeep.api.app import create_app
from earthkeep.api.routers.nightlights import router
from earthkeep.apikeys import create_key
from earthkeep.nightlights.processing import process_month
from earthkeep.nightlights.tables import Area, Input
from earthkeep.raster.grid import snap
from earthkeep.store.obstore import ObstoreStore

SQUARE = {"type": "Polygon", "coordinates": NAIROBI}


@pytest.fixture
def svc(db_url, tmp_path):
    s = open_services(db_url, tmp_path, ObstoreStore.local(tmp_path / "store"))
    yield s
    s.close()


@pytest.fixture
def client(svc):
    app = create_app(services=svc)
    if not any(getattr(r, "path", "") == "/areas" for r in app.routes):  # until the lead wires the router
        app.include_router(router)
    with TestClient(app) as c:
        yield c


def _auth(svc, *scopes):
    with svc.sessions.begin() as s:
        return {"Authorization": f"Bearer {create_key(s, 'nl', scopes)[1]}"}


def _geotiff(value=3.0):
    grid = snap(Polygon(NAIROBI[0]).bounds)
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1, "dtype": "float32",
               "crs": "EPSG:4326", "transform": grid.transform}
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(np.full(grid.shape, value, np.float32), 1)
        return mem.read()


def test_area_lifecycle_needs_a_key_and_keeps_the_geometry(client, svc, db_url):
    assert client.post("/areas", json=SQUARE).status_code == 401
    assert client.post("/areas", json=SQUARE, headers=_auth(svc, "read")).status_code == 403
    ingest = _auth(svc, "ingest")
    r = client.post("/areas?name=Nairobi", json=SQUARE, headers=ingest)
    assert r.status_code == 201, r.text
    area = r.json()
    assert area["type"] == "Feature" and area["properties"]["name"] == "Nairobi"
    assert area["bbox"] == [36.55, -1.55, 37.05, -1.05] and area["properties"]["repaired"] is False
    got = client.get(f"/areas/{area['id']}").json()
    assert Polygon(got["geometry"]["coordinates"][0]).equals(Polygon(NAIROBI[0]))
    assert [f["id"] for f in client.get("/areas?bbox=36,-2,37,-1").json()["features"]] == [area["id"]]
    assert client.get("/areas?bbox=0,0,1,1").json()["features"] == []
    renamed = client.put(f"/areas/{area['id']}?name=Nairobi%20County", headers=ingest).json()
    assert renamed["properties"]["name"] == "Nairobi County" and renamed["properties"]["geometry_changed"] is False
    if db_url.startswith("postgresql"):
        with svc.engine.connect() as conn:
            udt = conn.execute(text("SELECT udt_name FROM information_schema.columns "
                                    "WHERE table_name = 'nl_areas' AND column_name = 'geom'")).scalar()
            srid = conn.execute(text("SELECT ST_SRID(geom) FROM nl_areas")).scalar()
        assert (udt, srid) == ("geometry", 4326)
    assert client.delete(f"/areas/{area['id']}", headers=ingest).status_code == 204
    assert client.get(f"/areas/{area['id']}").status_code == 404


@pytest.mark.parametrize(("body", "message"), [
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, "Self-intersection"),
    ({"type": "Polygon", "coordinates": []}, "empty"),
    ({"type": "Polygon", "coordinates": [[[-60, -40], [60, -40], [60, 40], [-60, 40], [-60, -40]]]}, "km²"),
    ({**SQUARE, "crs": {"type": "name", "properties": {"name": "EPSG:3857"}}}, "is not WGS84"),
    ({"type": "Polygon", "coordinates": [[[4e6, 1e5], [4.1e6, 1e5], [4.1e6, 2e5], [4e6, 1e5]]]}, "outside WGS84"),
])
def test_bad_geometries_are_422_with_the_reason(client, svc, body, message):
    r = client.post("/areas?name=x", json=body, headers=_auth(svc, "ingest"))
    assert r.status_code == 422 and message in r.json()["detail"]


def test_repair_only_when_asked(client, svc):
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    r = client.post("/areas?name=bow&repair=true", json=bowtie, headers=_auth(svc, "ingest"))
    assert r.status_code == 201 and r.json()["properties"]["repaired"] is True
    assert r.json()["geometry"]["type"] == "MultiPolygon"


def test_jobs_endpoint_and_the_seed_alias(client, svc):
    ingest = _auth(svc, "ingest")
    area = client.post("/areas?name=a", json=SQUARE, headers=ingest).json()["id"]
    r = client.post("/nightlights/jobs", json={"area_id": area, "start_month": "2023-01", "end_month": "2023-02"},
                    headers=ingest)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "pending" and body["etl_processing"] is None
    assert [m["acquisition"]["kind"] for m in body["months"]] == ["laads_download"] * 2
    again = client.post("/nightlights/jobs", json={"area_id": area, "start_month": "2023-02",
                                                   "end_month": "2023-02"}, headers=ingest).json()
    assert again["months"][0]["acquisition"]["id"] == body["months"][1]["acquisition"]["id"]  # deduped
    ee = client.post("/earth-engine/export/", json={"area_id": area, "start_date": "2023-03-01",
                                                     "end_date": "2023-03-31"}, headers=ingest).json()
    assert ee["source"] == "earth_engine_export" and ee["months"][0]["acquisition"]["kind"] == "earth_engine_export"
    assert client.get(f"/nightlights/jobs/{body['id']}").json()["id"] == body["id"]
    assert len(client.get(f"/nightlights/jobs?area_id={area}").json()["requests"]) == 3
    for bad, message in (({"start_month": "2023-05", "end_month": "2023-01"}, "reversed"),
                         ({"start_month": "2023-01", "end_month": "2999-01"}, "has not ended yet")):
        r = client.post("/nightlights/jobs", json={"area_id": area, **bad}, headers=ingest)
        assert r.status_code == 422 and message in r.json()["detail"]
    r = client.post("/nightlights/jobs", json={"area_id": 999, "start_month": "2023-01", "end_month": "2023-01"},
                    headers=ingest)
    assert r.status_code == 404


async def _process_upload(svc, area_id, month):
    with svc.sessions() as s:
        area = s.get(Area, area_id)
        inp = s.query(Input).filter_by(area_id=area_id, month=month).one()
    await process_month(svc, area, month, inp, job_id=None)


async def test_results_csv_json_and_tiles(client, svc):
    ingest = _auth(svc, "ingest")
    area = client.post("/areas?name=a", json=SQUARE, headers=ingest).json()["id"]
    bad = client.post(f"/areas/{area}/uploads?month=2023-01", content=b"not a tiff", headers=ingest)
    assert bad.status_code == 422 and "not a readable GeoTIFF" in bad.json()["detail"]
    for month, value in (("2023-01", 2.0), ("2023-02", 3.0)):
        r = client.post(f"/areas/{area}/uploads?month={month}", content=_geotiff(value), headers=ingest)
        assert r.status_code == 202 and r.json()["source"] == "upload"
        await _process_upload(svc, area, month)
    series = client.get(f"/areas/{area}/timeseries").json()["timeseries"]
    assert [round(r["mean_radiance"], 6) for r in series] == [2.0, 3.0]
    assert series[1]["change_vs_first_pct"] == pytest.approx(50.0)
    text_csv = client.get(f"/areas/{area}/timeseries", headers={"Accept": "text/csv"})
    assert text_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text_csv.text)))
    assert [r["month"] for r in rows] == ["2023-01", "2023-02"] and float(rows[1]["change_vs_first_pct"]) == 50.0
    stats = client.get(f"/areas/{area}/statistics").json()
    assert stats["months"] == 2 and stats["change_pct"] == pytest.approx(50.0)
    assert "change_pct" in client.get(f"/areas/{area}/statistics?format=csv").text.splitlines()[0]
    doc = client.get(f"/tiles/{area}/2023-02/tilejson.json").json()
    assert doc["tiles"][0].endswith(f"/tiles/{area}/2023-02/{{z}}/{{x}}/{{y}}.png")
    z = doc["minzoom"]
    from earthkeep.raster.tiles import TMS

    t = TMS.tile(36.8, -1.3, z)
    first = client.get(f"/tiles/{area}/2023-02/{z}/{t.x}/{t.y}.png")
    assert first.status_code == 200 and first.content.startswith(b"\x89PNG")
    assert first.headers["x-tile-cache"] == "miss"
    assert await svc.store.exists(f"nightlights/tiles/{area}/2023-02/{z}/{t.x}/{t.y}.png")
    second = client.get(f"/tiles/{area}/2023-02/{z}/{t.x}/{t.y}.png")
    assert second.headers["x-tile-cache"] == "hit" and second.content == first.content
    assert client.get(f"/tiles/{area}/2023-02/{z}/0/0.png").status_code == 404
    assert client.get(f"/tiles/{area}/2023-02/20/0/0.png").status_code == 404
    assert client.get(f"/tiles/{area}/2024-02/{z}/{t.x}/{t.y}.png").status_code == 404
    await _process_upload(svc, area, "2023-02")  # reprocessing drops the cached tiles of that month
    assert not await svc.store.exists(f"nightlights/tiles/{area}/2023-02/{z}/{t.x}/{t.y}.png")
    assert client.delete(f"/areas/{area}", headers=ingest).status_code == 204
    assert await svc.store.list(f"nightlights/composites/{area}/") == []
