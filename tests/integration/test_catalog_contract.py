"""The catalog contract, run against every adapter: SQLite and PostgreSQL (with PostGIS).

Like the store's contract (``test_store_contract.py``), every test takes one parametrised fixture,
``engine``, and asserts only what a caller of the catalog port can observe: items and their assets,
searches (time, bbox, footprint, collections, ids, sort orders, CQL2 filters on the STAC form, cursor
pages), the run ledger, migrations from an empty database, driver errors as earthkeep errors, and
timezone-aware timestamps. The schema is migrated once per backend and module; each test starts from
empty catalog tables.
"""

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, inspect, text

from earthkeep.catalog.db import create_db_engine, session_factory, translate_errors
from earthkeep.catalog.filters import check_crs, matcher, parse_filter
from earthkeep.catalog.items import (
    AssetSpec,
    ItemQuery,
    collection_extents,
    count_items,
    delete_items,
    find_asset,
    get_item,
    search_items,
    touch,
    upsert_item,
)
from earthkeep.catalog.migrate import CatalogNotReady, current_revision, head_revision, require_current, upgrade
from earthkeep.catalog.runs import INTERRUPTED, close_interrupted, finish_run, list_runs, start_run
from earthkeep.catalog.stac import Fields, item_to_stac, select_fields
from earthkeep.catalog.tables import Item
from earthkeep.errors import Conflict, InvalidInput, NotFound, SourceUnavailable
from earthkeep.testbed.servers import free_port

BACKENDS = ["sqlite", "postgresql"]
BASE = "http://127.0.0.1:8000"


def _new_database(request: pytest.FixtureRequest, backend: str, directory) -> tuple[str, str | None]:
    """The URL of an empty database, and the PostgreSQL database name to drop afterwards."""
    if backend == "sqlite":
        return f"sqlite:///{directory}/catalog-{uuid.uuid4().hex[:8]}.db", None
    server = request.getfixturevalue("postgres_server")
    if not server.running:  # a test elsewhere stopped it
        server.start()
    name = f"t_{uuid.uuid4().hex[:16]}"
    return server.create_database(name), name


def _drop(request: pytest.FixtureRequest, name: str | None) -> None:
    if name is not None:
        request.getfixturevalue("postgres_server").drop_database(name)


@pytest.fixture(scope="module", params=BACKENDS)
def migrated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One catalog at the head revision per backend, shared by the tests of this module."""
    url, name = _new_database(request, request.param, tmp_path_factory.mktemp("catalog"))
    eng = create_db_engine(url)
    upgrade(eng)
    yield eng
    eng.dispose()
    _drop(request, name)


@pytest.fixture
def engine(migrated: Engine) -> Engine:
    """The catalog port on one backend, its item and run tables empty."""
    with migrated.begin() as conn:
        for table in ("assets", "items", "runs"):
            conn.execute(text(f"DELETE FROM {table}"))
    return migrated


@pytest.fixture(params=BACKENDS)
def empty_engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """A database without any table yet."""
    url, name = _new_database(request, request.param, tmp_path)
    eng = create_db_engine(url)
    yield eng
    eng.dispose()
    _drop(request, name)


T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _add(s, n, *, collection="gfs", bbox=(0, 0, 10, 10)):
    for i in range(n):
        upsert_item(s, collection=collection, item_id=f"{collection}-{i:03d}", start=T0 + timedelta(hours=3 * i),
                    end=T0 + timedelta(hours=3 * i + 3), bbox=bbox, properties={"i": i},
                    assets=[AssetSpec("data", f"{collection}/{i:03d}.grib2", 100 + i, "ab" * 32, "application/x-grib")])


def test_migration_is_idempotent_and_at_head(engine):
    assert current_revision(engine) == head_revision()
    assert upgrade(engine) == head_revision()


def test_item_round_trip_with_assets(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _add(s, 1)
    with sessions() as s:
        item = get_item(s, "gfs", "gfs-000")
        assert item.start_datetime == T0 and item.start_datetime.tzinfo is not None
        assert item.end_datetime == T0 + timedelta(hours=3)
        assert (item.west, item.south, item.east, item.north) == (0, 0, 10, 10)
        assert item.properties == {"i": 0}
        [asset] = item.assets
        assert (asset.store_key, asset.size, asset.sha256) == ("gfs/000.grib2", 100, "ab" * 32)
        assert item.last_accessed_at is None


def test_upsert_replaces_assets_and_properties(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _add(s, 1)
    with sessions.begin() as s:
        upsert_item(s, collection="gfs", item_id="gfs-000", start=T0, end=T0, properties={"v": 2},
                    assets=[AssetSpec("data", "gfs/000-v2.grib2", 5)])
    with sessions() as s:
        item = get_item(s, "gfs", "gfs-000")
        assert item.properties == {"v": 2}
        assert [a.store_key for a in item.assets] == ["gfs/000-v2.grib2"]


def test_search_filters_and_cursor_pages(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _add(s, 25)
        _add(s, 5, collection="cmems", bbox=(100, -10, 120, 10))
    with sessions() as s:
        seen, cursor = [], None
        while True:
            page = search_items(s, ItemQuery(collection="gfs", limit=10, cursor=cursor))
            seen += [i.item_id for i in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [f"gfs-{i:03d}" for i in range(25)]
        window = search_items(s, ItemQuery(collection="gfs", start=T0 + timedelta(hours=7),
                                           end=T0 + timedelta(hours=11)))
        assert [i.item_id for i in window.items] == ["gfs-002", "gfs-003"]
        boxed = search_items(s, ItemQuery(bbox=(110, 0, 111, 1)))
        assert {i.collection for i in boxed.items} == {"cmems"} and len(boxed.items) == 5
        with pytest.raises(InvalidInput):
            search_items(s, ItemQuery(bbox=(0, 50, 10, 40)))


def test_bbox_search_and_count_agree_on_both_backends_across_the_antimeridian(engine):
    from sqlalchemy import text

    from earthkeep.catalog.items import count_items

    sessions = session_factory(engine)
    with sessions.begin() as s:
        _add(s, 3, collection="east", bbox=(170, -5, 179, 5))
        _add(s, 2, collection="west", bbox=(-179, -5, -170, 5))
        _add(s, 4, collection="middle", bbox=(-10, -5, 10, 5))
        _add(s, 1, collection="north", bbox=(170, 60, 179, 70))
        upsert_item(s, collection="nowhere", item_id="x", start=T0, end=T0)  # no bbox: matches no bbox search
    with sessions() as s:
        for bbox, expected in (((160, -10, -160, 10), {"east": 3, "west": 2}), ((-20, -6, 20, 6), {"middle": 4}),
                               ((175, 50, 178, 80), {"north": 1}), ((0, 80, 10, 90), {})):
            q = ItemQuery(bbox=bbox, limit=100)
            got: dict[str, int] = {}
            for i in search_items(s, q).items:
                got[i.collection] = got.get(i.collection, 0) + 1
            assert got == expected, bbox
            assert count_items(s, q) == sum(expected.values())
        if engine.dialect.name == "postgresql":  # the index the bbox filter is written for (migration 0004)
            s.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(r[0] for r in s.execute(text(
                "EXPLAIN SELECT count(*) FROM items WHERE box(point(west, south), point(east, north)) "
                "&& box(point(0, 0), point(1, 1))")))
            assert "ix_items_bbox_gist" in plan


def test_touch_and_delete(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _add(s, 3)
    with sessions.begin() as s:
        touch(s, get_item(s, "gfs", "gfs-001"))
    with sessions.begin() as s:
        assert get_item(s, "gfs", "gfs-001").last_accessed_at is not None
        keys = delete_items(s, [get_item(s, "gfs", "gfs-000"), get_item(s, "gfs", "gfs-001")])
        assert sorted(keys) == ["gfs/000.grib2", "gfs/001.grib2"]
    with sessions() as s:
        with pytest.raises(NotFound):
            get_item(s, "gfs", "gfs-000")
        assert len(search_items(s, ItemQuery()).items) == 1


def test_run_ledger(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        run = start_run(s, "gfs", collection="gfs")
        run_id = run.id
    with sessions.begin() as s:
        finish_run(s, run_id, "failed", records=3, nbytes=1000, failed=1, error="HTTP 500 from mirror")
    with sessions() as s:
        [r] = list_runs(s, source="gfs")
        assert (r.status, r.records_collected, r.bytes_collected, r.error_message) == (
            "failed", 3, 1000, "HTTP 500 from mirror")
        assert r.completed_at >= r.started_at
        with pytest.raises(InvalidInput):
            finish_run(s, run_id, "exploded")


# ---------------------------------------------------------------- helpers


def _item(s, collection: str, item_id: str, start: datetime | None, end: datetime | None = None, *,
          bbox=(0, 0, 10, 10), geometry=None, properties=None, assets=()):
    return upsert_item(s, collection=collection, item_id=item_id, start=start, end=end, bbox=bbox,
                       geometry=geometry, properties=properties, assets=assets)


def _ids(page) -> list[str]:
    return [i.item_id for i in page.items]


def _all_pages(s, query: ItemQuery) -> tuple[list[str], int]:
    """Every id a search returns, following the cursor, and the number of pages."""
    seen, pages, cursor = [], 0, None
    while True:
        page = search_items(s, ItemQuery(**{**query.__dict__, "cursor": cursor}))
        seen += _ids(page)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            return seen, pages
        assert pages < 100, "the cursor does not advance"


# ---------------------------------------------------------------- items


def test_a_missing_item_is_not_found_naming_what_was_asked(engine):
    with session_factory(engine)() as s, pytest.raises(NotFound, match=r"no item 'x' in collection 'gfs'"):
        get_item(s, "gfs", "x")


def test_the_same_id_in_two_collections_is_two_items(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _item(s, "a", "same", T0, properties={"n": 1})
        _item(s, "b", "same", T0, properties={"n": 2})
    with sessions() as s:
        assert get_item(s, "a", "same").properties == {"n": 1}
        assert get_item(s, "b", "same").properties == {"n": 2}
        assert count_items(s, ItemQuery()) == 2


def test_upsert_replaces_the_assets_it_names_and_keeps_the_others(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _item(s, "gfs", "f", T0, assets=[AssetSpec("data", "gfs/f.grib2", 10), AssetSpec("idx", "gfs/f.idx", 2)])
    with sessions.begin() as s:
        _item(s, "gfs", "f", T0, assets=[AssetSpec("data", "gfs/f-v2.grib2", 11, roles=("data", "subset"))])
    with sessions() as s:
        item = get_item(s, "gfs", "f")
        assert [(a.name, a.store_key, a.size, a.roles) for a in item.assets] == [
            ("data", "gfs/f-v2.grib2", 11, ["data", "subset"]), ("idx", "gfs/f.idx", 2, ["data"])]
        assert find_asset(s, "gfs/f.grib2") is None
        found = find_asset(s, "gfs/f.idx")
        assert found is not None and (found.item.collection, found.item.item_id) == ("gfs", "f")


def test_an_end_defaults_to_the_start_and_a_footprint_gives_the_bbox(engine):
    triangle = {"type": "Polygon", "coordinates": [[[10.0, 0.0], [20.0, 0.0], [10.0, 5.0], [10.0, 0.0]]]}
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _item(s, "areas", "tri", T0, bbox=None, geometry=triangle)
        _item(s, "areas", "nowhere", None, bbox=None)
    with sessions() as s:
        tri = get_item(s, "areas", "tri")
        assert (tri.start_datetime, tri.end_datetime) == (T0, T0)
        assert (tri.west, tri.south, tri.east, tri.north) == (10.0, 0.0, 20.0, 5.0)
        assert tri.geometry["type"] == "Polygon" and len(tri.geometry["coordinates"][0]) == 4
        nowhere = get_item(s, "areas", "nowhere")
        assert (nowhere.start_datetime, nowhere.end_datetime, nowhere.west, nowhere.geometry) == (None,) * 4


@pytest.mark.parametrize(("bbox", "geometry", "message"), [
    ((0, 0, 10), None, "bbox needs 4 numbers"),
    ((0, 10, 10, 0), None, "south <= north"),
    ((0, 0, 190, 10), None, "in degrees"),
    (None, {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 1], [1, 0], [0, 0]]]}, "empty or invalid"),
    (None, {"type": "Circle", "coordinates": [0, 0]}, "GeoJSON object with a type"),
])
def test_bad_locations_are_invalid_input_and_write_nothing(engine, bbox, geometry, message):
    sessions = session_factory(engine)
    with pytest.raises(InvalidInput, match=message), sessions.begin() as s:
        _item(s, "gfs", "bad", T0, bbox=bbox, geometry=geometry)
    with sessions() as s:
        assert count_items(s, ItemQuery()) == 0


def test_collections_report_their_count_time_span_and_bbox(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _item(s, "b", "1", T0, T0 + timedelta(hours=1), bbox=(0, 0, 1, 1))
        _item(s, "b", "2", T0 + timedelta(days=1), T0 + timedelta(days=2), bbox=(-5, -6, 0.5, 0.5))
        _item(s, "a", "1", T0, bbox=None)
    with sessions() as s:
        got = [(c.name, c.count, c.start, c.end, c.bbox) for c in collection_extents(s)]
        assert got == [("a", 1, T0, T0, None),
                       ("b", 2, T0, T0 + timedelta(days=2), (-5.0, -6.0, 1.0, 1.0))]
        assert [c.name for c in collection_extents(s, "b")] == ["b"]
        assert collection_extents(s, "c") == []


def test_deleting_nothing_deletes_nothing(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _item(s, "gfs", "keep", T0, assets=[AssetSpec("data", "gfs/keep", 1)])
    with sessions.begin() as s:
        assert delete_items(s, []) == []
    with sessions() as s:
        assert _ids(search_items(s, ItemQuery())) == ["keep"]
        assert find_asset(s, "gfs/keep") is not None


# ---------------------------------------------------------------- search


def _three_hourly(s, n: int = 5) -> None:
    """Items i = 0..n-1 valid from T0 + 3i h to T0 + 3i + 3 h, and one without a time."""
    for i in range(n):
        _item(s, "gfs", f"h{i}", T0 + timedelta(hours=3 * i), T0 + timedelta(hours=3 * i + 3))
    _item(s, "gfs", "timeless", None)


@pytest.mark.parametrize(("start", "end", "expected"), [
    (3, 6, ["h0", "h1", "h2", "timeless"]),  # both bounds inclusive: h0 ends at 3, h2 starts at 6
    (3.5, 5.5, ["h1", "timeless"]),
    (13, None, ["h4", "timeless"]),  # open end
    (None, 2, ["h0", "timeless"]),  # open start
    (16, None, ["timeless"]),  # after every item
])
def test_datetime_intervals_overlap_inclusively_and_timeless_items_always_match(engine, start, end, expected):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _three_hourly(s)
    hours = lambda h: None if h is None else T0 + timedelta(hours=h)  # noqa: E731
    with sessions() as s:
        q = ItemQuery(start=hours(start), end=hours(end))
        assert sorted(_ids(search_items(s, q))) == expected
        assert count_items(s, q) == len(expected)


def test_collections_and_ids_narrow_a_search(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        for c in ("a", "b", "c"):
            for i in range(3):
                _item(s, c, f"{c}{i}", T0)
    with sessions() as s:
        assert _ids(search_items(s, ItemQuery(collections=["c", "a"]))) == ["a0", "a1", "a2", "c0", "c1", "c2"]
        assert _ids(search_items(s, ItemQuery(collection="b", collections=["c"], ids=["b2", "c0", "a1"]))) == [
            "b2", "c0"]
        assert _ids(search_items(s, ItemQuery(collections=["zzz"]))) == []
        assert count_items(s, ItemQuery(ids=["a1", "b1", "missing"])) == 2


@pytest.mark.parametrize(("total", "limit", "pages"), [(10, 10, 1), (10, 9, 2), (10, 3, 4), (0, 5, 1)])
def test_cursor_pages_cover_every_item_once_in_catalog_order(engine, total, limit, pages):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        for i in range(total):
            _item(s, "gfs", f"i{i:02d}", T0 + timedelta(hours=i))
    with sessions() as s:
        assert _all_pages(s, ItemQuery(limit=limit)) == ([f"i{i:02d}" for i in range(total)], pages)


def test_sort_orders_page_exactly_and_put_timeless_items_at_the_early_end(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _three_hourly(s)
        _item(s, "alpha", "h2", T0 + timedelta(hours=6), T0 + timedelta(hours=9))  # a tie on the time
    newest_first = ["h4", "h3", "h2", "h2", "h1", "h0", "timeless"]
    with sessions() as s:
        down = ItemQuery(sortby=[("datetime", True)], limit=2)
        got, pages = _all_pages(s, down)
        assert (got, pages) == (newest_first, 4)
        tie = search_items(s, ItemQuery(sortby=[("datetime", True)], ids=["h2"]))
        assert [i.collection for i in tie.items] == ["gfs", "alpha"]  # ties in catalog order (gfs written first)
        up = ItemQuery(sortby=[("datetime", False), ("collection", False)], limit=3)
        assert _all_pages(s, up) == (["timeless", "h0", "h1", "h2", "h2", "h3", "h4"], 3)
        assert [i.collection for i in search_items(s, ItemQuery(sortby=[("datetime", False), ("collection", False)],
                                                                  ids=["h2"])).items] == ["alpha", "gfs"]
        by_id = ItemQuery(sortby=[("id", True)], collections=["gfs"], limit=4)
        assert _all_pages(s, by_id) == (["timeless", "h4", "h3", "h2", "h1", "h0"], 2)


def test_cursors_are_tied_to_their_sort_order_and_foreign_ones_refused(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _three_hourly(s)
    with sessions() as s:
        sorted_cursor = search_items(s, ItemQuery(sortby=[("datetime", True)], limit=1)).next_cursor
        plain_cursor = search_items(s, ItemQuery(limit=1)).next_cursor
        assert sorted_cursor is not None and plain_cursor is not None
        with pytest.raises(InvalidInput, match="another sort order"):
            search_items(s, ItemQuery(sortby=[("id", False)], cursor=sorted_cursor))
        with pytest.raises(InvalidInput, match="another sort order"):
            search_items(s, ItemQuery(sortby=[("datetime", True)], cursor=plain_cursor))
        with pytest.raises(InvalidInput, match="pass the 'next' value unchanged"):
            search_items(s, ItemQuery(cursor="bm90IGpzb24"))
        with pytest.raises(InvalidInput, match="sortable: datetime, start_datetime, end_datetime, id, collection"):
            search_items(s, ItemQuery(sortby=[("size", False)]))


@pytest.mark.parametrize(("bbox", "expected"), [
    ((10, 10, 20, 20), ["cell", "east"]),  # touching a corner or an edge is overlapping
    ((10.001, 10.001, 20, 20), []),
    ((-5, -5, -0.001, 5), []),
    ((-180, -90, 180, 90), ["cell", "east", "far"]),
    ((179, -90, -179, 90), ["far"]),  # across the antimeridian
])
def test_bbox_searches_include_touching_boxes_and_nothing_else(engine, bbox, expected):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _item(s, "c", "cell", T0, bbox=(0, 0, 10, 10))
        _item(s, "c", "east", T0, bbox=(10, 0, 20, 10))
        _item(s, "c", "far", T0, bbox=(179.5, -1, 180, 1))
        _item(s, "c", "unplaced", T0, bbox=None)
    with sessions() as s:
        assert _ids(search_items(s, ItemQuery(bbox=bbox))) == expected
        assert count_items(s, ItemQuery(bbox=bbox)) == len(expected)


def test_intersects_tests_the_footprint_not_only_its_bbox_and_pages_stay_full(engine):
    # Twelve triangles in the lower-left half of their 1x1 cell; a point in the upper-right half of
    # every cell lies in each item's bbox but outside its footprint.
    sessions = session_factory(engine)
    with sessions.begin() as s:
        for i in range(12):
            x = float(i)
            tri = {"type": "Polygon", "coordinates": [[[x, 0.0], [x + 1, 0.0], [x, 1.0], [x, 0.0]]]}
            _item(s, "tri", f"t{i:02d}", T0, bbox=None, geometry=tri)
    inside = {"type": "Polygon", "coordinates": [[[0.1, 0.1], [11.2, 0.1], [11.2, 0.2], [0.1, 0.2], [0.1, 0.1]]]}
    corner = {"type": "Point", "coordinates": [3.9, 0.9]}
    with sessions() as s:
        assert _all_pages(s, ItemQuery(intersects=inside, limit=5)) == ([f"t{i:02d}" for i in range(12)], 3)
        assert count_items(s, ItemQuery(intersects=inside)) == 12
        assert _ids(search_items(s, ItemQuery(intersects=corner))) == []
        assert _ids(search_items(s, ItemQuery(bbox=(3.8, 0.8, 3.95, 0.95)))) == ["t03"]  # the bbox alone would match
        assert count_items(s, ItemQuery(intersects=corner)) == 0


def _stac_query(expr, **kw) -> ItemQuery:
    test = matcher(expr)
    return ItemQuery(matches=lambda item: test(item_to_stac(item, BASE)), **kw)


def test_cql2_filters_on_the_stac_form_page_and_count_exactly(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        for i in range(30):
            _item(s, "gfs" if i % 2 else "cmems", f"i{i:02d}", T0 + timedelta(hours=i),
                  properties={"i": i, "data_type": "wind" if i % 3 else "ocean_currents"})
    text_filter = parse_filter("\"earthkeep:i\" >= 10 AND collection = 'gfs' AND \"earthkeep:kind\" = 'wind'", None)
    json_filter = parse_filter({"op": "<", "args": [{"property": "earthkeep:i"}, 4]}, "cql2-json")
    wanted = [f"i{i:02d}" for i in range(10, 30) if i % 2 and i % 3]
    with sessions() as s:
        assert _all_pages(s, _stac_query(text_filter, limit=3)) == (wanted, 3)
        assert count_items(s, _stac_query(text_filter)) == len(wanted) == 7
        assert _ids(search_items(s, _stac_query(json_filter, sortby=[("datetime", True)]))) == [
            "i03", "i02", "i01", "i00"]
        missing = parse_filter("\"earthkeep:nothing\" = 1", None)  # unknown in CQL2: no match, no error
        assert count_items(s, _stac_query(missing)) == 0
    with pytest.raises(InvalidInput, match="unsupported operator or function 'sleep'"):
        parse_filter({"op": "sleep", "args": [1]}, "cql2-json")
    with pytest.raises(InvalidInput, match="filter-lang"):
        parse_filter("id = 'x'", "sql")
    with pytest.raises(InvalidInput, match=re.escape("only http://www.opengis.net/def/crs/OGC/1.3/CRS84")):
        check_crs("EPSG:4326")


def test_a_stored_item_as_stac_carries_utc_times_assets_and_links(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _item(s, "gfs", "a b/c", T0, T0 + timedelta(hours=3), bbox=(1, 2, 3, 4),
              properties={"data_type": "wind", "source": "aws", "x:own": 1},
              assets=[AssetSpec("data", "gfs/ab.grib2", 7, "ab" * 32, "application/x-grib")])
    with sessions() as s:
        item = get_item(s, "gfs", "a b/c")
        feature = item_to_stac(item, BASE)
    props = feature["properties"]
    assert (props["datetime"], props["start_datetime"], props["end_datetime"]) == (
        "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2024-01-01T03:00:00Z")
    assert props["created"].endswith("Z") and props["updated"].endswith("Z")
    assert (props["earthkeep:kind"], props["earthkeep:source"], props["x:own"]) == ("wind", "aws", 1)
    assert feature["bbox"] == [1, 2, 3, 4] and feature["geometry"]["coordinates"][0][0] == [1, 2]
    assert feature["assets"] == {"data": {
        "href": f"{BASE}/items/gfs/a%20b%2Fc/assets/data", "roles": ["data"], "file:size": 7,
        "type": "application/x-grib", "file:checksum": "1220" + "ab" * 32}}
    assert [link["rel"] for link in feature["links"]] == ["self", "parent", "collection", "root"]
    assert feature["links"][0]["href"] == f"{BASE}/stac/collections/gfs/items/a%20b%2Fc"
    reduced = select_fields(feature, Fields(include=["properties.earthkeep:kind"]))
    assert sorted(reduced) == ["collection", "id", "links", "properties", "type"]
    assert reduced["properties"] == {"earthkeep:kind": "wind"}


# ---------------------------------------------------------------- runs


def test_runs_are_listed_newest_first_and_filtered(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        for i, (source, status) in enumerate([("gfs", "completed"), ("gina", "failed"), ("gfs", "failed"),
                                               ("gfs", None)]):
            run = start_run(s, source, collection=source, job_id=i, trace_id=f"t{i}")
            run.started_at = T0 + timedelta(minutes=i)
            if status:
                finish_run(s, run.id, status)
    with sessions() as s:
        assert [r.job_id for r in list_runs(s)] == [3, 2, 1, 0]
        assert [r.job_id for r in list_runs(s, source="gfs")] == [3, 2, 0]
        assert [r.job_id for r in list_runs(s, status="failed")] == [2, 1]
        assert [r.job_id for r in list_runs(s, source="gfs", status="running")] == [3]
        assert [r.job_id for r in list_runs(s, limit=2)] == [3, 2]
        assert [r.trace_id for r in list_runs(s, source="gina")] == ["t1"]


def test_finishing_a_run_records_figures_merges_details_and_refuses_bad_states(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        run = start_run(s, "gfs")
        run.details = {"cycle": "2024010100"}
        run_id = run.id
    with sessions.begin() as s:
        finish_run(s, run_id, "completed", records=41, nbytes=123_456, details={"mirror": "aws"})
    with sessions() as s:
        [r] = list_runs(s)
        assert (r.status, r.records_collected, r.bytes_collected, r.records_failed, r.error_message) == (
            "completed", 41, 123_456, 0, None)
        assert r.details == {"cycle": "2024010100", "mirror": "aws"}
        with pytest.raises(InvalidInput, match="run status must be one of"):
            finish_run(s, run_id, "running")
        with pytest.raises(NotFound, match="no run nope"):
            finish_run(s, "nope", "completed")


def test_close_interrupted_fails_only_the_running_runs_of_that_job_source_and_collection(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        stale = [start_run(s, "gfs", collection="gfs", job_id=7).id for _ in range(2)]
        done = start_run(s, "gfs", collection="gfs", job_id=7)
        finish_run(s, done.id, "completed", records=1)
        other_job = start_run(s, "gfs", collection="gfs", job_id=8).id
        other_source = start_run(s, "cmems", collection="gfs", job_id=7).id
        no_collection = start_run(s, "gfs", job_id=7).id
    with sessions.begin() as s:
        assert sorted(close_interrupted(s, "gfs", "gfs", 7)) == sorted(stale)
    with sessions.begin() as s:
        assert close_interrupted(s, "gfs", "gfs", 7) == []  # nothing left to close
        assert close_interrupted(s, "gfs", None, 7) == [no_collection]  # no collection is its own group
    with sessions() as s:
        runs = {r.id: r for r in list_runs(s)}
        for run_id in stale:
            assert (runs[run_id].status, runs[run_id].error_message) == ("failed", INTERRUPTED)
            assert runs[run_id].completed_at is not None
        assert (runs[done.id].status, runs[done.id].records_collected) == ("completed", 1)
        assert runs[other_job].status == runs[other_source].status == "running"
        assert runs[no_collection].status == "failed"


# ---------------------------------------------------------------- migrations


CORE_TABLES = {"items", "assets", "runs", "jobs", "service_instances", "api_keys", "alembic_version"}


def test_migrations_bring_an_empty_database_to_every_head(empty_engine):
    assert current_revision(empty_engine) == ""
    with pytest.raises(CatalogNotReady, match="has no tables yet: run `earthkeep db upgrade`"):
        require_current(empty_engine, "here")
    assert upgrade(empty_engine, "0001") == "0001"
    behind = re.escape(f"is at revision 0001, this earthkeep needs {head_revision()}")
    with pytest.raises(CatalogNotReady, match=behind):
        require_current(empty_engine, "here")
    assert upgrade(empty_engine) == head_revision() == current_revision(empty_engine)
    require_current(empty_engine, "here")
    assert len(head_revision().split(",")) == 6  # the core and one branch per domain
    tables = set(inspect(empty_engine).get_table_names())
    assert tables >= CORE_TABLES
    assert {t for t in tables if t.startswith(("forcing_", "granule", "rescue_", "nightlights_"))}
    if empty_engine.dialect.name == "postgresql":
        with empty_engine.connect() as conn:
            assert conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")).scalar() == 1


# ---------------------------------------------------------------- driver errors


def test_a_unique_violation_is_a_conflict_and_leaves_the_first_row(engine):
    sessions = session_factory(engine)
    with sessions.begin() as s:
        _item(s, "gfs", "first", T0, assets=[AssetSpec("data", "gfs/shared", 1)])
    with pytest.raises(Conflict, match=r"^catalog: .*(unique|UNIQUE)"), translate_errors(), sessions.begin() as s:
        _item(s, "gfs", "second", T0, assets=[AssetSpec("data", "gfs/shared", 2)])
    with pytest.raises(Conflict, match=r"^items: "), translate_errors("items"), sessions.begin() as s:
        s.add(Item(collection="gfs", item_id="first"))
        s.flush()
    with sessions() as s:
        assert _ids(search_items(s, ItemQuery())) == ["first"]
        assert find_asset(s, "gfs/shared").size == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unreachable_database_is_source_unavailable(backend, tmp_path):
    url = f"sqlite:///{tmp_path}" if backend == "sqlite" else f"postgresql://earthkeep@127.0.0.1:{free_port()}/x"
    eng = create_db_engine(url)  # a directory is no database file; nothing listens on the port
    try:
        with pytest.raises(SourceUnavailable, match=r"database unreachable .*check DATABASE_URL"), translate_errors(), \
                session_factory(eng)() as s:
            s.execute(text("SELECT 1"))
        with pytest.raises(SourceUnavailable, match=r"^catalog migration: database unreachable"):
            current_revision(eng)
    finally:
        eng.dispose()


# ---------------------------------------------------------------- timestamps


def test_times_come_back_timezone_aware_in_utc_whatever_zone_went_in(engine):
    plus2 = timezone(timedelta(hours=2))
    sessions = session_factory(engine)
    before = datetime.now(UTC)
    with sessions.begin() as s:
        _item(s, "gfs", "z", datetime(2024, 1, 1, 2, tzinfo=plus2), datetime(2024, 1, 1, 5, tzinfo=plus2))
        run_id = start_run(s, "gfs").id
    with sessions.begin() as s:
        touch(s, get_item(s, "gfs", "z"))
        finish_run(s, run_id, "completed")
    with sessions() as s:
        item = get_item(s, "gfs", "z")
        [run] = list_runs(s)
    stamps = [item.start_datetime, item.end_datetime, item.created_at, item.updated_at, item.last_accessed_at,
              run.started_at, run.completed_at]
    assert all(t is not None and t.utcoffset() == timedelta(0) for t in stamps), stamps
    assert (item.start_datetime, item.end_datetime) == (T0, T0 + timedelta(hours=3))
    assert item.start_datetime.tzinfo is UTC
    assert all(t >= before for t in stamps[2:]), (before, stamps)
    with sessions() as s:  # an aware bound in another zone finds the same item
        assert _ids(search_items(s, ItemQuery(start=datetime(2024, 1, 1, 4, 59, tzinfo=plus2),
                                              end=datetime(2024, 1, 1, 5, tzinfo=plus2)))) == ["z"]


def test_a_naive_datetime_is_refused_as_invalid_input(engine):
    with pytest.raises(InvalidInput, match="naive datetime"), translate_errors(), \
            session_factory(engine).begin() as s:
        _item(s, "gfs", "naive", datetime(2024, 1, 1))
