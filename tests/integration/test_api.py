"""The API skeleton against a real catalog (SQLite and PostgreSQL) and a local store."""

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from earthkeep.api.app import create_app
from earthkeep.apikeys import create_key
from earthkeep.catalog.items import AssetSpec, get_item, upsert_item
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.obstore import ObstoreStore

T0 = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def services(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(catalog={"database_url": db_url}, api={"max_body_bytes": 4096})
    svc = Services.open(settings, store=ObstoreStore.local(tmp_path / "store"))
    yield svc
    svc.close()


@pytest.fixture
def client(services):
    with TestClient(create_app(services=services)) as c:
        yield c


def _key(services, *scopes):
    with services.sessions.begin() as s:
        return create_key(s, "test", scopes)[1]


async def _seed(services, n=5):
    for i in range(n):
        key = f"gfs/{i}.grib2"
        info = await services.store.put(key, f"bytes of {i}".encode())
        with services.sessions.begin() as s:
            upsert_item(s, collection="gfs", item_id=f"f{i:03d}", start=T0 + timedelta(hours=3 * i),
                        end=T0 + timedelta(hours=3 * i), bbox=(0, -10, 20, 10),
                        assets=[AssetSpec("data", key, info.size, info.sha256, "application/x-grib")])


def test_health_ready_metrics(client):
    assert client.get("/health").json()["status"] == "ok"
    r = client.get("/ready")
    assert r.status_code == 200 and r.json()["checks"] == {"catalog": "ok", "store": "ok"}
    text = client.get("/metrics").text
    assert "earthkeep_jobs{status=\"pending\"}" in text
    assert "earthkeep_http_requests_total" in text


def test_ready_is_503_when_the_store_is_down(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(catalog={"database_url": db_url})
    down = ObstoreStore.s3("bucket", "http://127.0.0.1:9", "k", "s", "us-east-1", 2.0)
    svc = Services.open(settings, store=down)
    try:
        with TestClient(create_app(services=svc)) as c:
            r = c.get("/ready")
            assert r.status_code == 503
            assert r.json()["checks"]["catalog"] == "ok"
            assert "127.0.0.1:9" in r.json()["checks"]["store"]
            assert c.get("/health").status_code == 200
    finally:
        svc.close()


async def test_items_filters_pages_and_download(services, client):
    await _seed(services)
    page = client.get("/items", params={"collection": "gfs", "limit": 2}).json()
    assert [i["item_id"] for i in page["items"]] == ["f000", "f001"] and page["next"]
    page2 = client.get("/items", params={"collection": "gfs", "limit": 2, "cursor": page["next"]}).json()
    assert [i["item_id"] for i in page2["items"]] == ["f002", "f003"]
    window = client.get("/items", params={"start": "2024-03-01T05:00:00Z", "end": "2024-03-01T07:00:00Z"}).json()
    assert [i["item_id"] for i in window["items"]] == ["f002"]
    assert client.get("/items", params={"bbox": "100,0,110,5"}).json()["items"] == []
    assert client.get("/items", params={"bbox": "1,2,3"}).status_code == 422
    assert client.get("/items", params={"start": "2024-03-01T05:00:00"}).status_code == 422
    r = client.get("/items/gfs/f003/assets/data")
    assert r.status_code == 200 and r.content == b"bytes of 3"
    assert r.headers["x-checksum-sha256"] == page2["items"][1]["assets"][0]["sha256"]
    with services.sessions() as s:
        assert get_item(s, "gfs", "f003").last_accessed_at is not None
        assert get_item(s, "gfs", "f002").last_accessed_at is None
    missing = client.get("/items/gfs/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


async def test_stac_search_and_item(services, client):
    await _seed(services, 3)
    landing = client.get("/stac").json()
    assert landing["type"] == "Catalog"
    colls = client.get("/stac/collections").json()["collections"]
    assert [c["id"] for c in colls] == ["gfs"]
    fc = client.get("/stac/search", params={"collections": "gfs", "datetime": "2024-03-01T03:00:00Z/..",
                                            "limit": 1}).json()
    assert fc["type"] == "FeatureCollection" and fc["features"][0]["id"] == "f001"
    assert any(link["rel"] == "next" for link in fc["links"])
    item = client.get("/stac/collections/gfs/items/f000").json()
    assert item["assets"]["data"]["href"].endswith("/items/gfs/f000/assets/data")
    assert item["bbox"] == [0, -10, 20, 10]


def test_write_endpoints_need_a_key_with_scope(services, client):
    body = {"kind": "fetch", "payload": {"url": "http://example.org/x"}}
    r = client.post("/jobs", json=body)
    assert r.status_code == 401 and "API key" in r.json()["detail"]
    assert client.post("/jobs", json=body, headers={"Authorization": "Bearer ek_wrong"}).status_code == 401
    read = _key(services, "read")
    r = client.post("/jobs", json=body, headers={"X-API-Key": read})
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    admin = _key(services, "admin")
    r = client.post("/jobs", json=body, headers={"Authorization": f"Bearer {admin}", "X-Request-ID": "req-42"})
    assert r.status_code == 202
    job = r.json()
    assert job["status"] == "pending" and job["trace_id"] == "req-42"
    assert r.headers["x-request-id"] == "req-42"
    listed = client.get("/jobs", params={"status": "pending"}).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    hdr = {"Authorization": f"Bearer {admin}"}
    assert client.post(f"/jobs/{job['id']}/cancel", headers=hdr).json()["status"] == "cancelled"
    assert client.post(f"/jobs/{job['id']}/cancel", headers=hdr).status_code == 409
    assert client.post(f"/jobs/{job['id']}/retry", headers=hdr).json()["status"] == "pending"


def test_unknown_job_kind_is_a_clear_422(services, client):
    admin = _key(services, "admin")
    r = client.post("/jobs", json={"kind": "teleport"}, headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 422 and "known kinds" in r.json()["detail"] and "fetch" in r.json()["detail"]


def test_revoked_key_is_refused(services, client):
    from earthkeep.apikeys import revoke_key

    admin = _key(services, "admin")
    with services.sessions.begin() as s:
        revoke_key(s, admin[:10])
    r = client.post("/jobs", json={"kind": "fetch"}, headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_oversized_and_malformed_bodies(services, client):
    admin = _key(services, "admin")
    hdr = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"}
    big = client.post("/jobs", content=b'{"kind":"fetch","payload":{"x":"' + b"a" * 10000 + b'"}}', headers=hdr)
    assert big.status_code == 413 and big.json()["error"] == "PayloadTooLarge"
    bad = client.post("/jobs", content=b'{"kind": ', headers=hdr)
    assert bad.status_code == 422
    assert client.get("/jobs/notanumber").status_code == 422
    assert client.get("/jobs/424242").status_code == 404


def test_verified_keys_are_cached_briefly_and_revocations_elsewhere_apply_within_that_time(services, client):
    """The catalog is asked once per cache period; last_used_at is written then, not on every request."""
    from sqlalchemy import select, update

    from earthkeep.apikeys import KeyCache
    from earthkeep.catalog.tables import ApiKey

    now = [100.0]
    services.api_keys = KeyCache(2.0, clock=lambda: now[0])
    admin = _key(services, "admin")
    hdr = {"Authorization": f"Bearer {admin}"}

    def last_used():
        with services.sessions() as s:
            return s.scalars(select(ApiKey.last_used_at).where(ApiKey.prefix == admin[:10])).one()

    assert client.post("/jobs", json={"kind": "fetch", "payload": {}}, headers=hdr).status_code != 401
    first = last_used()
    with services.sessions.begin() as s:  # as another process would: straight in the catalog, no revoke_key
        s.execute(update(ApiKey).where(ApiKey.prefix == admin[:10]).values(revoked_at=T0))
    now[0] += 1.0
    job = {"kind": "fetch", "payload": {"url": "https://example.org/a.nc", "collection": "downloads"}}
    assert client.post("/jobs", json=job, headers=hdr).status_code == 202  # still trusted: checked 1 s ago
    assert last_used() == first  # and no write for it
    now[0] += 1.5
    r = client.post("/jobs", json=job, headers=hdr)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert client.post("/jobs", json={"kind": "fetch"}, headers={"Authorization": "Bearer ek_nope"}).status_code == 401


def test_a_key_cache_of_zero_seconds_asks_the_catalog_every_time(services, client):
    from sqlalchemy import update

    from earthkeep.apikeys import KeyCache
    from earthkeep.catalog.tables import ApiKey

    services.api_keys = KeyCache(0)
    reader = _key(services, "read")
    hdr = {"Authorization": f"Bearer {reader}"}
    r = client.post("/jobs", json={"kind": "fetch"}, headers=hdr)
    assert r.status_code == 403 and "lacks the 'admin' scope" in r.json()["detail"]
    with services.sessions.begin() as s:
        s.execute(update(ApiKey).where(ApiKey.prefix == reader[:10]).values(revoked_at=T0))
    assert client.post("/jobs", json={"kind": "fetch"}, headers=hdr).status_code == 401


def test_metrics_label_the_docs_routes_and_pool_unknown_paths(client):
    for path in ("/docs", "/openapi.json", "/redoc", "/no/such/path/1", "/no/such/path/2"):
        client.get(path)
    text = client.get("/metrics").text
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert f'route="{path}"' in text, path
    assert 'route="unmatched",status="404"' in text
    assert "/no/such/path" not in text
