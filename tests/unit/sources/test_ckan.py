"""Listing a CKAN portal with moving metadata_modified windows, against the emulator."""

from datetime import UTC, datetime, timedelta

import pytest

from earthkeep.errors import InvalidInput, SourceUnavailable
from earthkeep.sources.ckan import (
    DEFAULT_PORTAL,
    PORTALS,
    CkanClient,
    Filters,
    Lister,
    parse_modified,
    solr_key,
)
from earthkeep.testbed.ckan import CkanEmulator, create_ckan_app
from earthkeep.testbed.ckan_catalog import PortalSpec, SyntheticPortal
from earthkeep.testbed.runner import serve_app


@pytest.fixture(scope="module")
def portal():
    emu = CkanEmulator(SyntheticPortal(PortalSpec(datasets=1200, organizations=8, seed=3, tie_block=260)))
    with serve_app(create_ckan_app(emu, faults=False)) as base:
        yield base, emu


@pytest.fixture
def client(portal):
    c = CkanClient(portal[0], timeout_s=30)
    yield c
    c.close()


def ids(lister):
    return [d["id"] for page in lister.pages() for d in page]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_lists_every_dataset_once_even_with_ties_larger_than_a_page(portal, client, concurrency):
    _base, emu = portal
    lister = Lister(client, rows=100, concurrency=concurrency)
    found = ids(lister)
    assert len(found) == len(set(found)) == len(emu.portal.datasets)
    assert set(found) == set(emu.portal.datasets)
    assert lister.stats.invalid == 0 and lister.stats.reported == 1200
    assert lister.stats.high_water == max(parse_modified(d["metadata_modified"]) for d in emu.portal.order)
    assert emu.calls.get("package_search", 0) > 0


def test_filters_and_since(portal, client):
    _base, emu = portal
    org = emu.portal.order[0]["organization"]["name"]
    want = {d["id"] for d in emu.portal.order if d["organization"]["name"] == org}
    assert set(ids(Lister(client, fq=Filters(organizations=(org,)).fq(), rows=50, concurrency=3))) == want
    since = parse_modified(emu.portal.order[-100]["metadata_modified"])
    recent = {d["id"] for d in emu.portal.order if parse_modified(d["metadata_modified"]) >= since}
    got = set(ids(Lister(client, rows=30, concurrency=2, since=since)))
    assert recent <= got and len(got) <= len(recent) + 5  # millisecond windows may add a neighbour
    assert not ids(Lister(client, since=emu.portal.now + timedelta(days=1)))


def test_fq_quoting():
    assert (
        Filters(organizations=("noaa-gov", "epa gov"), tags=("climate",)).fq()
        == 'organization:(noaa-gov OR "epa gov") AND tags:(climate)'
    )
    assert Filters().fq() == ""
    assert Filters(tags=("a",)).key() != Filters(tags=("b",)).key()


@pytest.mark.parametrize("mode", ["html", "not_json", "no_result", "bad_count"])
def test_malformed_answers_are_a_clear_source_error(portal, client, mode, monkeypatch):
    base, emu = portal
    monkeypatch.setitem(emu.malformed, "package_search", mode)
    monkeypatch.setattr(CkanClient.call.retry, "sleep", lambda s: None)  # no backoff waits in tests
    with pytest.raises(SourceUnavailable, match=base):
        ids(Lister(client, rows=100, concurrency=2))


def test_results_that_are_not_datasets_are_counted_not_kept(portal, client, monkeypatch):
    _base, emu = portal
    monkeypatch.setitem(emu.malformed, "package_search", "bad_results")
    lister = Lister(client, rows=100, concurrency=2)
    with pytest.raises(SourceUnavailable):  # the plan step sees no usable first record either
        ids(lister)
    lister = Lister(client, rows=100, concurrency=1)
    good, _invalid = lister._accept(["x", {"name": "no id"}, {"id": "a", "metadata_modified": "2024-01-01T00:00:00"}])
    assert [g["id"] for g in good] == ["a"] and lister.stats.invalid == 2


def test_a_refused_query_is_invalid_input(client):
    with pytest.raises(InvalidInput, match="refused"):
        client.search("metadata_modified:[yesterday TO *]")


def test_unreachable_portal_is_source_unavailable(monkeypatch):
    monkeypatch.setattr(CkanClient.call.retry, "sleep", lambda s: None)
    client = CkanClient("http://127.0.0.1:9", timeout_s=2)
    with pytest.raises(SourceUnavailable, match="failed"):
        client.search("")


def test_work_stealing_spends_few_requests_beyond_the_full_pages(client):
    for _ in range(3):
        lister = Lister(client, rows=100, concurrency=4)
        assert len(ids(lister)) == 1200
        # 12 full pages + 2 to plan; each window (4 planned, any split) ends with at most one short page
        assert lister.stats.requests <= 1200 // 100 + 2 + 2 * 4, lister.stats


# ------------------------------------------------------------- the provider as data


def test_portals_are_declared_with_their_limits():
    assert {name: (p.url, p.rows_max, p.politeness) for name, p in PORTALS.items()} == {
        "data.gov": ("https://catalog.data.gov", 1000, 8),
        "data.gov.uk": ("https://data.gov.uk", 1000, 4),
        "open.canada.ca": ("https://open.canada.ca/data", 1000, 4),
        "data.europa.eu": ("https://data.europa.eu/data", 1000, 4),
    }
    assert DEFAULT_PORTAL == "https://catalog.data.gov"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-18T21:38:23.184512", datetime(2024, 5, 18, 21, 38, 23, 184512, tzinfo=UTC)),  # CKAN: naive UTC
        ("2024-05-18T21:38:23Z", datetime(2024, 5, 18, 21, 38, 23, tzinfo=UTC)),
        ("2024-05-18T23:38:23+02:00", datetime(2024, 5, 18, 21, 38, 23, tzinfo=UTC)),
    ],
)
def test_modified_times_are_aware_utc(value, expected):
    ts = parse_modified(value)
    assert ts == expected and ts.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", [None, "", "yesterday", 1716068303, "2024-13-01T00:00:00"])
def test_a_modified_time_that_is_not_one_is_invalid_input(value):
    with pytest.raises(InvalidInput, match="metadata_modified"):
        parse_modified(value)


def test_solr_keys_are_milliseconds_in_utc_and_sort_like_the_times():
    ts = parse_modified("2024-05-18T23:38:23.184999+02:00")
    assert solr_key(ts) == "2024-05-18T21:38:23.184Z"
    assert parse_modified(solr_key(ts)) == ts.replace(microsecond=184000)
    times = [parse_modified(v) for v in ("2024-01-01T00:00:00.001", "2023-12-31T23:59:59.999", "2024-01-01T00:00:00")]
    assert sorted(solr_key(t) for t in times) == [solr_key(t) for t in sorted(times)]


def test_filters_quote_what_solr_would_split_and_drop_quotes():
    assert Filters(groups=("a b", 'say "x"', "")).fq() == 'groups:("a b" OR "say x" OR "")'
    assert Filters(organizations=("noaa",), groups=("climate",), tags=("t1", "t2")).fq() == (
        "organization:(noaa) AND groups:(climate) AND tags:(t1 OR t2)")


def test_the_scope_key_ignores_order_but_not_content():
    a = Filters(organizations=("b", "a"), tags=("x",))
    assert a.key() == Filters(organizations=("a", "b"), tags=("x",)).key()
    assert a.key() != Filters(organizations=("a", "b"), groups=("x",)).key()
    assert a.key() != Filters(organizations=("a", "b"), tags=("x",), query="title:rain").key()
    assert len(a.key()) == 32
    assert a.as_dict() == {"organizations": ["b", "a"], "groups": [], "tags": ["x"], "query": "*:*"}


def test_a_stored_dataset_is_in_scope_only_when_every_given_filter_matches():
    scope = Filters(organizations=("noaa",), tags=("ocean", "wind"))
    assert scope.matches("noaa", [], ["wind"])
    assert not scope.matches("nasa", [], ["wind"])
    assert not scope.matches("noaa", [], ["land"])
    assert Filters().matches(None, [], [])
    assert not Filters(query="title:rain").matches("noaa", [], [])  # a free query cannot be checked offline
