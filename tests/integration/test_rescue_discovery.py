"""Discovery into the catalog (SQLite and PostgreSQL): full and incremental runs, history, gone, bad input."""

from __future__ import annotations

import asyncio

import pytest
from rescue_support import count, portal
from sqlalchemy import select

from earthkeep.catalog.db import session_factory
from earthkeep.catalog.runs import list_runs
from earthkeep.errors import Conflict, SourceUnavailable
from earthkeep.rescue.discovery import DiscoveryRequest, discover
from earthkeep.rescue.probe import probe_assets
from earthkeep.rescue.settings import RescueSettings
from earthkeep.rescue.tables import Dataset, DatasetHistory, Harvest, RescueAsset
from earthkeep.sources.ckan import CkanClient


@pytest.fixture
def sessions(engine):
    return session_factory(engine)


def run(sessions, settings, **payload):
    return discover(sessions, settings, DiscoveryRequest.from_settings(settings, payload), allow_private=True)


def test_full_then_incremental_with_history_and_gone(engine, sessions):
    with portal(400, tie_block=150) as (base, emu):
        s = RescueSettings(portal=base, rows=100, concurrency=4)
        first = run(sessions, s)
        assert first["created"] == 400 and first["listed"] == 400
        assert count(engine, "SELECT count(*) FROM rescue_datasets") == 400
        n_res = sum(len(d["resources"]) for d in emu.portal.datasets.values())
        assert count(engine, "SELECT count(*) FROM rescue_resources") == n_res
        assert count(engine, "SELECT count(*) FROM rescue_assets") == n_res

        ch = emu.portal.advance(created=6, modified=9, removed=4)
        calls = emu.calls["package_search"]
        second = run(sessions, s, sweep=True)
        assert second["created"] == 6 and second["modified"] == 9 and second["gone"] == 4
        assert second["listed"] < 40  # incremental: only what changed since the high-water mark
        assert emu.calls["package_search"] - calls < 20
        with sessions() as ss:
            gone = {d.ckan_id for d in ss.scalars(select(Dataset).where(Dataset.status == "gone"))}
            assert gone == set(ch.removed)
            changes = {h.change for h in ss.scalars(select(DatasetHistory))}
            assert changes == {"created", "modified", "gone"}
            modified = ss.scalars(select(DatasetHistory).where(DatasetHistory.change == "modified")).all()
            assert all(h.fields for h in modified)  # what changed is recorded
            assert ss.scalars(select(Harvest)).one().high_water is not None
        assert count(engine, "SELECT count(*) FROM rescue_datasets") == 406  # nothing deleted

        third = run(sessions, s)
        assert third["created"] == 0 and third["modified"] == 0  # nothing new: nothing rewritten


def test_filters_limit_the_scope_and_the_sweep(engine, sessions):
    with portal(300) as (base, emu):
        org = emu.portal.order[0]["organization"]["name"]
        s = RescueSettings(portal=base, organizations=[org], rows=50)
        out = run(sessions, s, sweep=True)
        want = sum(1 for d in emu.portal.datasets.values() if d["organization"]["name"] == org)
        assert out["created"] == want and out["gone"] == 0
        assert count(engine, "SELECT count(DISTINCT organization) FROM rescue_datasets") == 1


@pytest.mark.parametrize("mode", ["html", "no_result", "bad_count"])
def test_malformed_portal_fails_the_run_and_loses_nothing(engine, sessions, mode, monkeypatch):
    monkeypatch.setattr(CkanClient.call.retry, "sleep", lambda s: None)
    with portal(200) as (base, emu):
        s = RescueSettings(portal=base, rows=50)
        run(sessions, s)
        emu.portal.advance(created=5)
        emu.malformed["package_search"] = mode
        with pytest.raises(SourceUnavailable):
            run(sessions, s, sweep=True)
        with sessions() as ss:
            runs = list_runs(ss, source="ckan")
            assert runs[0].status == "failed" and base in runs[0].error_message
        assert count(engine, "SELECT count(*) FROM rescue_datasets WHERE status = 'gone'") == 0
        emu.malformed.clear()
        assert run(sessions, s)["created"] == 5  # the high-water mark did not move past the failure


def test_a_sweep_that_would_empty_the_catalog_is_refused(engine, sessions):
    with portal(100) as (base, emu):
        s = RescueSettings(portal=base, rows=50)
        run(sessions, s)
        emu.portal.advance(removed=80)
        with pytest.raises(Conflict, match="max_gone_fraction"):
            run(sessions, s, sweep=True)
        assert count(engine, "SELECT count(*) FROM rescue_datasets WHERE status = 'gone'") == 0
        assert run(sessions, s, sweep=True, force=True)["gone"] == 80


def test_hostile_urls_and_absurd_sizes_are_recorded_not_fetched(engine, sessions):
    with portal(50, seed=1) as (base, emu):
        ds = emu.portal.order[0]
        ds["resources"] += [
            {"id": "evil-1", "url": "file:///etc/passwd", "format": "CSV", "size": 10},
            {"id": "evil-2", "url": "http://169.254.169.254/latest/meta-data/", "format": "JSON"},
            {"id": "huge-1", "url": base + "/files/x/huge.nc", "format": "NetCDF", "size": 10**30},
            {"id": "text-1", "url": base + "/files/x/t.csv", "format": "CSV", "size": "12 MB"},
            "not a resource", {"url": "https://h/no-id.csv"},
        ]
        out = discover(sessions, RescueSettings(portal=base), DiscoveryRequest.from_settings(
            RescueSettings(portal=base)), allow_private=False)
        assert out["invalid"] == 2 and out["errors"]
    with sessions() as ss:
        by_res = {a.filename.split("-")[0]: a for a in ss.scalars(select(RescueAsset))}
        evil = [a for a in ss.scalars(select(RescueAsset)) if a.url.startswith(("file:", "http://169.254"))]
        assert len(evil) == 2 and all(a.state == "refused" and not a.pool and a.last_error for a in evil)
        huge = next(a for a in by_res.values() if a.url.endswith("huge.nc"))
        assert huge.size is None and "implausible" in huge.size_note
        text = next(a for a in by_res.values() if a.url.endswith("t.csv"))
        assert text.size is None and "not a byte count" in text.size_note


def test_probe_sizes_failures_and_landing_pages(engine, sessions):
    with portal(150, seed=4) as (base, emu):
        s = RescueSettings(portal=base, probe_batch=5000, probe_concurrency=16)
        run(sessions, s)
        before = count(engine, "SELECT count(*) FROM rescue_assets")
        counts = asyncio.run(probe_assets(sessions, s, allow_private=True))
        assert counts["probed"] > 0 and counts["links"] > 0 and counts.get("failing", 0) > 0
    after = count(engine, "SELECT count(*) FROM rescue_assets")
    with sessions() as ss:
        children = ss.scalars(select(RescueAsset).where(RescueAsset.parent_id.is_not(None))).all()
        assert len(children) == after - before
        assert all(c.url.startswith(base + "/files/") and c.kind == "file" for c in children)
        assert any(c.url.endswith("/deep.csv") for c in children)  # one level below the landing page
        missing = ss.scalars(select(RescueAsset).where(RescueAsset.url.contains("/gone/"))).all()
        assert missing and all(a.state == "failing" and "404" in a.last_error for a in missing)
        headed = ss.scalars(select(RescueAsset).where(RescueAsset.size_source == "head")).all()
        assert all(a.size == emu.portal.files[a.url[len(base):].replace("/redirect", "", 1)
                                              .replace("/slow", "", 1).replace("/flaky", "", 1)]
                   for a in headed if "/files/" in a.url)


def test_probe_refuses_private_targets_without_allow_private(engine, sessions):
    with portal(20, seed=9) as (base, _emu):
        s = RescueSettings(portal=base)
        run(sessions, s)  # allow_private=True at discovery so the loopback URLs are kept ...
        counts = asyncio.run(probe_assets(sessions, s, allow_private=False))  # ... but a probe may not go there
    assert counts["refused"] == counts["probed"] > 0
    assert count(engine, "SELECT count(*) FROM rescue_assets WHERE state = 'refused' AND pool") == 0


def test_jobs_and_schedules(db_url, tmp_path, monkeypatch):
    import structlog
    from rescue_support import services_for

    from earthkeep.jobs.handlers import JobContext
    from earthkeep.rescue.domain import PROBE, discover_job, probe_job, reap_job, schedules

    monkeypatch.chdir(tmp_path)
    svc = services_for(db_url, tmp_path, allow_private=True)
    assert {s.kind for s in schedules(svc.settings)} == {"rescue.discover", "rescue.rank", "rescue.reap"}
    with portal(80, seed=5) as (base, _emu):
        svc.use_settings(RescueSettings(portal=base, probe_batch=50))
        job = svc.queue.enqueue("rescue.discover", {"full": True}).job
        ctx = JobContext(job=job, services=svc, log=structlog.get_logger())
        out = asyncio.run(discover_job(ctx))
        assert out["created"] == 80 and out["ranked"] > 0
        probe, _ = svc.queue.list(kind=PROBE)
        assert len(probe) == 1
        out = asyncio.run(probe_job(JobContext(job=probe[0], services=svc, log=structlog.get_logger())))
        assert out["probed"] == 50 and len(svc.queue.list(kind=PROBE)[0]) == 2  # more to probe: next batch queued
    assert asyncio.run(reap_job(JobContext(job=job, services=svc, log=structlog.get_logger()))) == {"expired": 0}
    svc.close()
