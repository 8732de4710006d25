"""The hostile inputs corpus (tests/data/hostile/corpus.py) against the API on SQLite and PostgreSQL.

Every input gets a clear 4xx naming the problem, never a 5xx, and leaves nothing behind: no job queued,
no item, area, station or observation stored, no object in the store.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from earthkeep.api.app import create_app
from earthkeep.apikeys import create_key
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.obstore import ObstoreStore

_spec = importlib.util.spec_from_file_location(
    "hostile_corpus", Path(__file__).resolve().parents[1] / "data" / "hostile" / "corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)  # type: ignore[union-attr]

TABLES = ("jobs", "items", "assets", "nl_areas", "nl_inputs", "ingest_observations", "ingest_stations")


@pytest.fixture
def services(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(catalog={"database_url": db_url}, transfer={"work_dir": tmp_path / "partial"})
    svc = Services.open(settings, store=ObstoreStore.local(tmp_path / "store"))
    yield svc
    svc.close()


@pytest.fixture
def client(services):
    with services.sessions.begin() as s:
        secret = create_key(s, "test", ["admin", "ingest", "read"])[1]
    with TestClient(create_app(services=services), raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {secret}"}) as c:
        yield c


def counts(services: Services) -> dict[str, int]:
    with services.engine.connect() as conn:
        out = {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES}
    out["objects"] = len(asyncio.run(_keys(services)))
    return out


async def _keys(services: Services) -> list[str]:
    return [o.key for o in await services.store.list("")]


def refused(r, *words: str) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    body = r.text.lower()
    assert all(w.lower() in body for w in words), (words, r.text[:500])


@pytest.fixture
def nothing_stored(services):
    before = counts(services)
    yield
    assert counts(services) == before


@pytest.mark.parametrize("url", corpus.SSRF_URLS)
def test_ssrf_urls_are_refused_before_anything_is_queued(client, nothing_stored, url):
    refused(client.post("/jobs", json={"kind": "fetch", "payload": {"url": url, "collection": "downloads"}}))


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/", "http://169.254.169.254/", "file:///etc/passwd"])
def test_a_private_rescue_portal_is_refused(client, nothing_stored, url):
    refused(client.post("/update-ckan", json={"portal": url}))


@pytest.mark.parametrize("name", corpus.TRAVERSAL)
def test_traversal_in_fetch_keys_and_ids_is_refused(client, nothing_stored, name):
    for field in ("key", "item_id", "collection"):
        payload = {"url": "https://example.org/data.nc", "collection": "downloads", field: name}
        refused(client.post("/jobs", json={"kind": "fetch", "payload": payload}))


@pytest.mark.parametrize("name", [n for n in corpus.TRAVERSAL + corpus.ODD_NAMES if n not in (".", "..")])
def test_traversal_in_path_parameters_reads_nothing(client, nothing_stored, name):
    q = quote(name, safe="")
    for path in (f"/items/downloads/{q}", f"/items/{q}/x", f"/items/downloads/x/assets/{q}",
                 f"/stations/{q}", f"/weather/{q}", f"/stac/collections/{q}", f"/stac/collections/x/items/{q}",
                 f"/forcing/datasets/{q}/file", f"/tiles/1/{q}/1/0/0.png"):
        r = client.get(path)
        assert r.status_code in (400, 404, 422), (path, r.status_code, r.text[:300])
        assert "root:" not in r.text


@pytest.mark.parametrize("path", ["/observations", "/areas", "/jobs", "/areas/1/uploads?month=2024-01"])
def test_a_100_mb_body_is_413(client, nothing_stored, path):
    r = client.post(path, content=b"x" * corpus.HUGE_BODY_BYTES, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, (r.status_code, r.text[:300])


@pytest.mark.parametrize("case", sorted(corpus.geojson_cases()))
def test_hostile_geojson_is_refused(client, nothing_stored, case):
    body = corpus.geojson_cases()[case]
    refused(client.post("/areas", params={"name": "x"}, content=body, headers={"Content-Type": "application/json"}))


def test_corrupt_geotiff_uploads_store_nothing(client, services):
    square = {"type": "Polygon", "coordinates": [[[36.5, -1.5], [37, -1.5], [37, -1], [36.5, -1], [36.5, -1.5]]]}
    area = client.post("/areas", params={"name": "a"}, json=square).json()["id"]
    before = counts(services)
    for body in (corpus.corrupt_geotiff(), corpus.html_as_geotiff(), b""):
        refused(client.post(f"/areas/{area}/uploads", params={"month": "2024-01"}, content=body,
                            headers={"Content-Type": "image/tiff"}))
    assert counts(services) == before


def test_nul_bytes_are_refused_or_rejected_per_record(client, nothing_stored):
    for path in (f"/items?collection={quote(corpus.NUL)}", f"/stations/{quote(corpus.NUL)}",
                 f"/weather/{quote(corpus.NUL)}", f"/jobs?kind={quote(corpus.NUL)}",
                 f"/stac/search?collections={quote(corpus.NUL)}"):
        r = client.get(path)
        assert r.status_code < 500, (path, r.status_code, r.text[:300])
    obs = [{"station_id": corpus.NUL, "timestamp": "2024-01-01T00:00:00Z", "temperature": 1.0}]
    r = client.post("/observations", json=obs)
    assert r.status_code < 500 and r.json().get("accepted", 0) == 0, r.text[:300]
    refused(client.post("/jobs", json={"kind": "fetch", "payload": {"url": "https://example.org/a",
                                                                    "collection": corpus.NUL}}))
