"""The CKAN action API emulator: response shape, limits, errors, data hosts, changes over time."""

import httpx
import pytest
from ckanapi import RemoteCKAN
from ckanapi.errors import NotFound, SearchQueryError, ValidationError

from earthkeep.testbed.ckan import CkanEmulator, create_ckan_app
from earthkeep.testbed.ckan_catalog import PortalSpec, SyntheticPortal
from earthkeep.testbed.runner import serve_app


@pytest.fixture(scope="module")
def served():
    emu = CkanEmulator(SyntheticPortal(PortalSpec(datasets=2500, organizations=10, seed=11, tie_block=50)))
    with serve_app(create_ckan_app(emu, faults=False)) as base:
        yield base, emu


def test_generation_is_deterministic_and_realistic():
    a, b = SyntheticPortal(PortalSpec(datasets=300, seed=5)), SyntheticPortal(PortalSpec(datasets=300, seed=5))
    assert list(a.datasets) == list(b.datasets)
    assert list(SyntheticPortal(PortalSpec(datasets=300, seed=6)).datasets) != list(a.datasets)
    formats = {r["format"] for d in a.datasets.values() for r in d["resources"]}
    assert {"CSV", "NetCDF", "ZIP", "JSON", "HTML"} <= formats
    assert a.pages and any(d["organization"]["name"] == "noaa-gov" for d in a.datasets.values())


def test_a_20000_dataset_catalog_builds():
    portal = SyntheticPortal()
    assert len(portal.datasets) == 20_000 and len({d["name"] for d in portal.order}) == 20_000
    assert len(portal.orgs) == 60 and sum(o["package_count"] for o in portal.orgs.values()) == 20_000


def test_package_search_shape_and_row_cap(served):
    base, _emu = served
    doc = httpx.post(f"{base}/api/action/package_search", json={"rows": 5000, "q": "*:*"}).json()
    assert doc["success"] is True and doc["help"].startswith(base)
    assert set(doc["result"]) >= {"count", "results", "facets", "search_facets"}
    assert doc["result"]["count"] == 2500 and len(doc["result"]["results"]) == 1000
    first = doc["result"]["results"][0]
    assert {"id", "name", "metadata_modified", "organization", "resources", "tags"} <= set(first)
    assert first["resources"][0]["url"].startswith(("http", "file", "ftp", "gopher"))


def test_fq_sort_start_fl_facets(served):
    base, emu = served
    ck = RemoteCKAN(base)
    org = emu.portal.order[0]["organization"]["name"]
    r = ck.action.package_search(fq=f"organization:{org} AND metadata_modified:[2015-01-01T00:00:00Z TO *]",
                                 sort="metadata_modified desc", rows=3, start=1, fl="id,metadata_modified",
                                 **{"facet.field": '["tags"]'})
    assert all(set(d) == {"id", "metadata_modified"} for d in r["results"])
    mods = [d["metadata_modified"] for d in r["results"]]
    assert mods == sorted(mods, reverse=True) and "tags" in r["search_facets"]
    with pytest.raises(SearchQueryError):
        ck.action.package_search(fq="metadata_modified:[nonsense TO *]")
    with pytest.raises(ValidationError):
        ck.action.package_search(rows=-1)


def test_other_actions_and_errors(served):
    base, emu = served
    ck = RemoteCKAN(base)
    orgs = ck.action.organization_list()
    assert orgs == sorted(orgs) and len(orgs) == 10
    assert ck.action.organization_show(id=orgs[0])["package_count"] >= 0
    assert len(ck.action.package_list()) == 2500 and len(ck.action.package_list(limit=10, offset=5)) == 10
    name = emu.portal.order[0]["name"]
    assert ck.action.package_show(id=name)["name"] == name
    with pytest.raises(NotFound):
        ck.action.package_show(id="no-such-dataset")
    assert httpx.post(f"{base}/api/action/package_create", json={}).status_code == 400


def test_data_hosts(served):
    base, emu = served
    path, size = next(iter(emu.portal.files.items()))
    assert int(httpx.head(base + path).headers["content-length"]) == size
    part = httpx.get(base + path, headers={"range": "bytes=0-9"})
    assert part.status_code == 206 and len(part.content) == 10
    assert httpx.get(f"{base}/redirect{path}").status_code == 302
    assert httpx.get(f"{base}/gone{path}").status_code == 404
    page = next(iter(emu.portal.pages))
    assert "<a href=" in httpx.get(base + page).text


def test_changes_over_time():
    portal = SyntheticPortal(PortalSpec(datasets=200, seed=2))
    before = {k: d["metadata_modified"] for k, d in portal.datasets.items()}
    ch = portal.advance(created=5, modified=7, removed=3)
    assert len(ch.created) == 5 and len(ch.modified) == 7 and len(ch.removed) == 3
    assert len(portal.datasets) == 202 and not set(ch.removed) & set(portal.datasets)
    newest = portal.order[-20:]
    assert {d["id"] for d in newest} >= set(ch.created) | set(ch.modified)
    assert all(portal.datasets[i]["metadata_modified"] > before[i] for i in ch.modified)
