"""Discovery's bulk write path (SQLite and PostgreSQL): multi-statement pages, exact values, ids, failures."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
from rescue_support import count, portal
from sqlalchemy import select

from earthkeep.catalog.db import session_factory
from earthkeep.catalog.runs import list_runs
from earthkeep.rescue import discovery
from earthkeep.rescue.bulk import Bulk
from earthkeep.rescue.catalog import DATASETS, Context, persist_page
from earthkeep.rescue.discovery import DiscoveryRequest, discover
from earthkeep.rescue.settings import RescueSettings
from earthkeep.rescue.tables import Dataset, DatasetHistory, Harvest, RescueAsset, Resource

HUGE = 10**30  # beyond 64 bits: must survive exactly (orjson refuses it; the standard library writes it)


def records(n: int, per: int = 3, *, modified: str = "2020-01-02T03:04:05.123456") -> list[dict]:
    return [
        {
            "id": f"ds-{i:05d}", "name": f"name-{i}", "title": f"Title {i}", "metadata_modified": modified,
            "organization": {"id": f"org-{i % 3}", "name": f"org{i % 3}"},
            "tags": [{"name": "b"}, {"name": "a"}], "groups": [{"name": "g"}], "tracking_summary": {"total": i},
            "extras": [{"key": "note", "value": "ünïcödé ☃"}],
            "resources": [
                {"id": f"ds-{i:05d}-r{j}", "url": f"https://data.example.gov/{i}/{j}.csv", "format": "CSV",
                 "size": HUGE if j == 0 else 1000 + j}
                for j in range(per)
            ],
        }
        for i in range(n)
    ]  # fmt: skip


def test_a_page_larger_than_one_statement_is_kept_exactly(engine):
    sessions = session_factory(engine)
    ctx = Context("https://portal.example.gov", "run-1", 1 << 44, allow_private=False)
    page = records(1200)  # 1,200 datasets and 3,600 resources and assets: several statements per table
    with sessions.begin() as s:
        res = persist_page(s, ctx, page)
    assert (res.created, res.resources, res.assets, res.invalid) == (1200, 3600, 3600, 0)
    with sessions() as s:
        rows = s.scalars(select(Dataset).order_by(Dataset.id)).all()
        assert [d.ckan_id for d in rows] == [r["id"] for r in page]  # ids in page order
        assert rows[7].meta == page[7] and rows[7].meta["resources"][0]["size"] == HUGE
        assert rows[7].tags == ["a", "b"] and rows[7].popularity == 7 and rows[7].organization == "org1"
        assert rows[7].metadata_modified == datetime(2020, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
        assert len({d.organization_id for d in rows}) == 3 and None not in {d.organization_id for d in rows}
        res7 = s.scalars(select(Resource).where(Resource.dataset_id == rows[7].id).order_by(Resource.id)).all()
        assert [r.ckan_id for r in res7] == ["ds-00007-r0", "ds-00007-r1", "ds-00007-r2"]
        assert res7[0].meta["size"] == HUGE and res7[0].size is None and res7[1].size == 1001
        assets = s.scalars(select(RescueAsset).where(RescueAsset.resource_id == res7[0].id)).all()
        assert len(assets) == 1 and assets[0].dataset_id == rows[7].id and assets[0].state == "new"
        assert "implausible" in assets[0].size_note and assets[0].pool
        history = s.scalars(select(DatasetHistory).where(DatasetHistory.dataset_id == rows[7].id)).one()
        assert history.change == "created" and history.fields == {"name": "name-7", "title": "Title 7"}
        assert history.run_id == "run-1" and history.observed_at.tzinfo is not None
    with sessions.begin() as s:
        top = max(d.id for d in rows)
        assert Bulk(s.connection()).ids(DATASETS, 3)[0] > top  # reserved ids never collide with written ones


def test_a_large_changed_page_updates_in_place_with_history(engine):
    sessions = session_factory(engine)
    ctx = Context("https://portal.example.gov", "run-1", 1 << 44, allow_private=False)
    first = records(700)
    with sessions.begin() as s:
        persist_page(s, ctx, first)
    second = copy.deepcopy(first)
    for i, r in enumerate(second):
        r["metadata_modified"] = "2021-01-01T00:00:00"
        r["title"] += " (rev)"
        r["resources"] = [*r["resources"][1:], {"id": f"new-{i}", "url": f"https://x.example/{i}.nc"}]
    ctx2 = Context("https://portal.example.gov", "run-2", 1 << 44, allow_private=False)
    with sessions.begin() as s:
        res = persist_page(s, ctx2, second)
    assert (res.modified, res.created, res.resources, res.assets) == (700, 0, 700, 700)
    assert count(engine, "SELECT count(*) FROM rescue_datasets") == 700
    assert count(engine, "SELECT count(*) FROM rescue_resources WHERE status = 'removed'") == 700
    assert count(engine, "SELECT count(*) FROM rescue_dataset_history WHERE change = 'modified'") == 700
    with sessions() as s:
        d = s.scalars(select(Dataset).where(Dataset.ckan_id == "ds-00005")).one()
        assert d.title == "Title 5 (rev)" and d.changes == 1 and d.modified_raw == "2021-01-01T00:00:00"
        h = s.scalars(
            select(DatasetHistory).where(DatasetHistory.change == "modified", DatasetHistory.dataset_id == d.id)
        ).one()
        assert h.fields["title"] == {"old": "Title 5", "new": "Title 5 (rev)"}
        assert h.fields["resources"]["added"] == ["new-5"] and h.fields["resources"]["removed"] == ["ds-00005-r0"]


def test_a_failing_write_fails_the_run_stops_the_listing_and_keeps_the_mark(engine, monkeypatch):
    sessions = session_factory(engine)
    calls = []

    def failing(s, ctx, page):
        calls.append(len(page.datasets))
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(s, ctx, page)

    real = discovery.write_page
    monkeypatch.setattr(discovery, "write_page", failing)
    with portal(400) as (base, _emu):
        s = RescueSettings(portal=base, rows=50, concurrency=4)
        with pytest.raises(RuntimeError, match="disk full"):
            discover(sessions, s, DiscoveryRequest.from_settings(s), allow_private=True)
        with sessions() as ss:
            run = list_runs(ss, source="ckan")[0]
            assert run.status == "failed" and "disk full" in run.error_message
            assert ss.scalars(select(Harvest)).one().high_water is None  # the next run starts from scratch
        assert 2 <= len(calls) < 8  # stopped soon after: at most the pages already prepared
        monkeypatch.setattr(discovery, "write_page", real)
        out = discover(sessions, s, DiscoveryRequest.from_settings(s), allow_private=True)
    assert out["created"] + out["unchanged"] == 400
    assert count(engine, "SELECT count(*) FROM rescue_datasets") == 400


def test_pages_are_reported_in_order_as_they_are_written(engine):
    sessions = session_factory(engine)
    seen: list[int] = []
    with portal(300) as (base, _emu):
        s = RescueSettings(portal=base, rows=40, concurrency=4)
        out = discover(
            sessions,
            s,
            DiscoveryRequest.from_settings(s),
            allow_private=True,
            on_page=lambda listed, reported: seen.append(listed),
        )
    assert out["created"] == 300 and len(seen) >= 300 // 40 and seen == sorted(seen) and seen[-1] == 300


def test_a_bulk_insert_that_breaks_a_constraint_raises_sqlalchemys_error(engine):
    from sqlalchemy.exc import IntegrityError

    from earthkeep.catalog.db import translate_errors
    from earthkeep.errors import Conflict
    from earthkeep.rescue.catalog import HISTORY
    from earthkeep.rescue.rows import HISTORY_COLUMNS

    sessions = session_factory(engine)
    with pytest.raises(IntegrityError), sessions.begin() as s:  # no dataset 999999: the foreign key refuses
        b = Bulk(s.connection())
        b.insert(HISTORY, HISTORY_COLUMNS, [(999999, b.enc.time(datetime.now(UTC)), None, "created", "{}", None)])
    with pytest.raises(Conflict), translate_errors("rescue"), sessions.begin() as s:
        Bulk(s.connection()).insert(HISTORY, HISTORY_COLUMNS, [(999999, None, None, "created", "{}", None)])
    assert count(engine, "SELECT count(*) FROM rescue_dataset_history") == 0


def filed_under(engine) -> dict[str, str]:
    """Each stored dataset's CKAN id -> the CKAN id of the organization its row points to."""
    with engine.connect() as conn:
        return dict(
            conn.exec_driver_sql(
                "SELECT d.ckan_id, o.ckan_id FROM rescue_datasets d "
                "JOIN rescue_organizations o ON o.id = d.organization_id"
            ).all()
        )


def test_parallel_writers_keep_exactly_what_the_portal_holds(engine):
    """Several writer connections (PostgreSQL; SQLite keeps its one writer): nothing lost, doubled or misfiled."""
    sessions = session_factory(engine)
    with portal(1500, faults=False) as (base, emu):
        s = RescueSettings(portal=base, rows=50, concurrency=4, writers=4)
        out = discover(sessions, s, DiscoveryRequest.from_settings(s), allow_private=True)
        expected = emu.portal.datasets
        n_res = sum(len(d["resources"]) for d in expected.values())
        assert (out["created"], out["resources"], out["assets"]) == (1500, n_res, n_res)
        assert count(engine, "SELECT count(*) FROM rescue_datasets") == 1500
        assert count(engine, "SELECT count(*) FROM rescue_resources") == n_res
        assert count(engine, "SELECT count(*) FROM rescue_assets") == n_res
        assert count(engine, "SELECT count(*) FROM rescue_dataset_history WHERE change = 'created'") == 1500
        orgs = {d["organization"]["id"] for d in expected.values()}
        assert count(engine, "SELECT count(*) FROM rescue_organizations") == len(orgs)
        assert filed_under(engine) == {cid: d["organization"]["id"] for cid, d in expected.items()}  # all, right org

        emu.portal.advance(created=30, modified=40, removed=0)
        again = discover(sessions, s, DiscoveryRequest.from_settings(s), allow_private=True)
        assert (again["created"], again["modified"]) == (30, 40)
        assert count(engine, "SELECT count(*) FROM rescue_datasets") == 1530
        assert count(engine, "SELECT count(*) FROM rescue_dataset_history WHERE change = 'modified'") == 40


def test_a_pages_new_organizations_are_shared_only_once_it_commits(engine):
    from sqlalchemy import event

    from earthkeep.rescue.bulk import Encoder
    from earthkeep.rescue.rows import prepare_page

    sessions = session_factory(engine)
    ctx = Context("https://portal.example.gov", "run-1", 1 << 44, allow_private=False)
    shared_at_commit: list[set[str]] = []
    event.listen(sessions, "before_commit", lambda _s: shared_at_commit.append(set(ctx.orgs)))
    keeper = discovery._PageWriter(sessions)
    try:
        res = keeper.write(ctx, prepare_page(Encoder(engine.dialect), ctx, records(3)))
    finally:
        keeper.close()
    assert res.created == 3
    assert shared_at_commit == [set()]  # other writers could not refer to them while uncommitted
    assert set(ctx.orgs) == {"org-0", "org-1", "org-2"}


def test_two_pages_bringing_the_same_new_organization_at_once(engine):
    """The second insert of a new organization waits for the first transaction and skips it, not fails."""
    import threading
    import time
    from dataclasses import replace

    sessions = session_factory(engine)
    ctx = Context("https://portal.example.gov", "run-1", 1 << 44, allow_private=False)
    page = records(4)  # organizations org-0, org-1, org-2, org-0
    first, second = page[:2], page[2:]  # org-0 in both
    out: dict[str, object] = {}

    def write_second() -> None:
        try:
            with sessions.begin() as s:
                out["res"] = persist_page(s, replace(ctx, orgs={}), second)
        except Exception as exc:  # reported below
            out["error"] = exc

    s1 = sessions()
    s1.begin()
    persist_page(s1, replace(ctx, orgs={}), first)  # org-0 and org-1 inserted, not committed
    t = threading.Thread(target=write_second)
    t.start()
    if engine.dialect.name == "postgresql":  # wait until the second transaction is held by the first's row
        deadline = time.monotonic() + 20
        while count(engine, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") == 0:
            assert time.monotonic() < deadline, "the second writer never waited for the first"
            time.sleep(0.02)
    s1.commit()
    s1.close()
    t.join(30)
    assert "error" not in out, out.get("error")
    assert out["res"].created == 2  # type: ignore[attr-defined]
    assert count(engine, "SELECT count(*) FROM rescue_organizations") == 3
    assert count(engine, "SELECT count(*) FROM rescue_datasets") == 4
    assert filed_under(engine) == {r["id"]: r["organization"]["id"] for r in page}


def test_writers_adding_the_same_organizations_in_opposite_orders_do_not_deadlock(engine):
    """One writer holds org-a and then wants org-b; another brings org-b before org-a in its page."""
    import threading
    import time
    from dataclasses import replace

    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: its transactions never overlap")
    sessions = session_factory(engine)
    ctx = Context("https://portal.example.gov", "run-1", 1 << 44, allow_private=False)

    def rec(i: int, org: str) -> dict:
        r = records(1)[0]
        return {**r, "id": f"ds-{i}", "organization": {"id": org, "name": org}, "resources": []}

    out: dict[str, object] = {}

    def second_writer() -> None:
        try:
            with sessions.begin() as s:
                out["res"] = persist_page(s, replace(ctx, orgs={}), [rec(2, "org-b"), rec(3, "org-a")])
        except Exception as exc:  # reported below
            out["error"] = exc

    s1 = sessions()
    s1.begin()
    persist_page(s1, replace(ctx, orgs={}), [rec(1, "org-a")])  # holds org-a, uncommitted
    t = threading.Thread(target=second_writer)
    t.start()
    deadline = time.monotonic() + 20
    while count(engine, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") == 0:
        assert time.monotonic() < deadline, "the second writer never waited for the first"
        time.sleep(0.02)
    persist_page(s1, replace(ctx, orgs={}), [rec(4, "org-b")])  # now wants org-b too
    s1.commit()
    s1.close()
    t.join(30)
    assert "error" not in out, out.get("error")  # unsorted inserts: "deadlock detected" in one of the two
    assert count(engine, "SELECT count(*) FROM rescue_organizations") == 2
    assert count(engine, "SELECT count(*) FROM rescue_datasets") == 4


def test_a_page_rolled_back_by_a_deadlock_is_kept_again(engine, monkeypatch):
    import threading

    import psycopg
    from sqlalchemy.exc import OperationalError

    sessions = session_factory(engine)
    calls: list[int] = []
    failed: list[int] = []
    lock = threading.Lock()  # several writers on PostgreSQL

    def deadlocking_once(s, ctx, page):
        with lock:
            calls.append(len(page.datasets))
            fail = len(calls) == 2
        result = real(s, ctx, page)  # written, then rolled back with the error
        if fail:
            failed.append(len(page.datasets))
            raise OperationalError("COPY rescue_assets ...", None, psycopg.errors.DeadlockDetected("deadlock detected"))
        return result

    real = discovery.write_page
    monkeypatch.setattr(discovery, "write_page", deadlocking_once)
    with portal(300, faults=False) as (base, emu):
        s = RescueSettings(portal=base, rows=50, concurrency=2)
        out = discover(sessions, s, DiscoveryRequest.from_settings(s), allow_private=True)
        n_res = sum(len(d["resources"]) for d in emu.portal.datasets.values())
    assert len(failed) == 1 and sum(calls) == 300 + failed[0]  # every page once, the failed one twice
    assert (out["created"], out["resources"]) == (300, n_res)
    assert count(engine, "SELECT count(*) FROM rescue_datasets") == 300
    assert count(engine, "SELECT count(*) FROM rescue_resources") == n_res
    assert count(engine, "SELECT count(*) FROM rescue_dataset_history") == 300
    with sessions() as ss:
        assert list_runs(ss, source="ckan")[0].status == "completed"
