"""The catalog contract, run against every adapter: SQLite and PostgreSQL (with PostGIS).

Like the store's contract (``test_store_contract.py``), every test takes one parametrised fixture,
``engine``, and asserts only what a caller of the catalog port can observe: items and their assets,
searches (time, bbox, footprint, collections, ids, sort orders, CQL2 filters on the STAC form, cursor
pages), the run ledger, migrations from an empty database, driver errors as earthkeep errors, and
timezone-aware timestamps. The schema is migrated once per backend and module; each test starts from
empty catalog tables.
"""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from earthkeep.catalog.db import create_db_engine, session_factory
from earthkeep.catalog.items import (
    AssetSpec,
    ItemQuery,
    delete_items,
    get_item,
    search_items,
    touch,
    upsert_item,
)
from earthkeep.catalog.migrate import current_revision, head_revision, upgrade
from earthkeep.catalog.runs import finish_run, list_runs, start_run
from earthkeep.errors import InvalidInput, NotFound

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

