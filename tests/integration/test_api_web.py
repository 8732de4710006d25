"""The dashboard's files, the offline /docs and /redoc, and CORS only when EARTHKEEP_CORS_ORIGINS names origins."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from earthkeep.api.app import create_app
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.obstore import ObstoreStore

STAC_BROWSER = "https://radiantearth.github.io"


@pytest.fixture
def make_client(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opened = []

    def make(**api):
        settings = load_settings(catalog={"database_url": db_url}, api=api)
        svc = Services.open(settings, store=ObstoreStore.local(tmp_path / "store"))
        client = TestClient(create_app(services=svc))
        opened.append((client.__enter__(), svc))
        return client

    yield make
    for client, svc in opened:
        client.__exit__(None, None, None)
        svc.close()


def test_root_is_the_dashboard_and_every_file_it_names_is_served(make_client):
    c = make_client()
    r = c.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    refs = re.findall(r'(?:src|href)="(/ui/[^"]+)"', r.text)
    assert "/ui/js/app.js" in refs and "/ui/vendor/leaflet/leaflet.js" in refs
    for ref in refs:
        assert c.get(ref).status_code == 200, ref
    assert "http://" not in r.text and "https://" not in r.text  # nothing from another host
    assert c.get("/ui/js/app.js").headers["content-type"].startswith(("text/javascript", "application/javascript"))


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_load_their_assets_from_the_package(make_client, path):
    c = make_client()
    page = c.get(path).text
    scripts = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert scripts and all(s.startswith("/ui/vendor/") for s in scripts), scripts
    for s in scripts:
        r = c.get(s)
        assert r.status_code == 200 and len(r.content) > 500, s
    assert "cdn.jsdelivr" not in page and "fonts.googleapis" not in page


def test_no_cors_headers_unless_origins_are_configured(make_client):
    c = make_client()
    r = c.get("/health", headers={"Origin": STAC_BROWSER})
    assert "access-control-allow-origin" not in r.headers
    pre = c.options("/items", headers={"Origin": STAC_BROWSER, "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers


def test_configured_origins_may_read_and_send_a_key(make_client):
    c = make_client(cors_origins=f"{STAC_BROWSER}/, http://localhost:5173")
    r = c.get("/stac", headers={"Origin": STAC_BROWSER})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == STAC_BROWSER
    pre = c.options("/jobs", headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status_code == 200 and "authorization" in pre.headers["access-control-allow-headers"].lower()
    other = c.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_cors_origins_setting_reads_the_environment(monkeypatch):
    monkeypatch.setenv("EARTHKEEP_CORS_ORIGINS", "https://a.example, ,https://b.example/")
    assert load_settings().api.cors_origin_list() == ["https://a.example", "https://b.example"]
