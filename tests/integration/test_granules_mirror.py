"""The GINA mirror against the emulator on loopback: faults, hostile listings, restarts, the lock."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from granules_support import config, emulator, open_services
from sqlalchemy import func, select, update

from earthkeep.catalog.runs import list_runs
from earthkeep.catalog.tables import Asset, Item, utcnow
from earthkeep.errors import Conflict
from earthkeep.granules.mirror import MirrorHooks, mirror
from earthkeep.granules.tables import GranuleFailure, GranuleMessage
from earthkeep.sources.gina import COLLECTION
from earthkeep.testbed.faults import Fault, FaultInjector
from earthkeep.testbed.runner import serve_app


def items(svc) -> list[str]:
    with svc.sessions() as s:
        return sorted(s.scalars(select(Item.item_id).where(Item.collection == COLLECTION)))


def message_uids(svc) -> list[str]:
    with svc.sessions() as s:
        return list(s.scalars(select(GranuleMessage.uid).where(GranuleMessage.type == "file")))


async def stored_keys(svc) -> list[str]:
    return [o.key for o in await svc.store.list("viirs/sdr/")]


async def test_mirror_stores_verifies_and_catalogues_each_file_once(db_url, tmp_path):
    emu = emulator(tmp_path)
    emu.add_granules(2)
    svc = open_services(db_url, tmp_path)
    try:
        with serve_app(emu.app()) as base:
            report = await mirror(svc, config(svc, base))
            again = await mirror(svc, config(svc, base))
        assert sorted(report.stored) == sorted(emu.names()) == items(svc)
        assert again.stored == [] and again.skipped == len(emu.names())
        assert Counter(message_uids(svc)) == Counter(emu.names())
        assert len(await stored_keys(svc)) == len(emu.names())
        with svc.sessions() as s:
            run = list_runs(s, source="gina")[-1]
            md5s = list(s.scalars(select(Asset.extra)))
        assert run.status == "completed" and run.records_collected == len(emu.names())
        assert {e["md5"] for e in md5s} == {g.md5 for g in emu.granules}
        assert emu.searches[0]["facilities[]"] == ["gilmore"] and emu.searches[0]["satellites[]"] == ["snpp"]
    finally:
        svc.close()


async def test_hostile_listing_entries_are_refused_and_nothing_of_them_is_fetched(tmp_path):
    emu = emulator(tmp_path, hostile=True)
    emu.add_granules(1)
    svc = open_services(f"sqlite:///{tmp_path}/c.db", tmp_path)
    try:
        with serve_app(emu.app()) as base:
            report = await mirror(svc, config(svc, base))
        assert len(report.refused) == 13
        assert items(svc) == sorted(emu.names())
        assert all("etc" not in k and "passwd" not in k for k in await stored_keys(svc))
        assert not (tmp_path / "etc").exists()
        with svc.sessions() as s:
            run = list_runs(s, source="gina")[0]
        assert len(run.details["refused_entries"]) == 13
    finally:
        svc.close()


async def test_wrong_md5_truncated_and_corrupt_files_never_reach_the_catalog(db_url, tmp_path):
    emu = emulator(tmp_path)
    sdr = [emu.sdr_at(0, "snpp", seg, "gilmore").format() for seg in ("GMTCO", "SVM15", "SVM16")]
    emu.wrong_md5.add(sdr[0])
    emu.truncated.add(sdr[1])
    emu.corrupt.add(sdr[2])
    emu.add_granules(2)
    svc = open_services(db_url, tmp_path)
    try:
        with serve_app(emu.app()) as base:
            report = await mirror(svc, config(svc, base, retry_base_s=3600))
            assert set(report.failed) == set(sdr)
            assert "md5 mismatch" in report.failed[sdr[0]]
            assert "IntegrityError" in report.failed[sdr[1]]
            assert "not a readable HDF5 file" in report.failed[sdr[2]]
            good = sorted(set(emu.names()) - set(sdr))
            assert items(svc) == good and sorted(message_uids(svc)) == good
            assert sorted(k.rsplit("/", 1)[1] for k in await stored_keys(svc)) == good
            with svc.sessions() as s:
                run = list_runs(s, source="gina")[0]
                fails = {f.name: f.attempts for f in s.scalars(select(GranuleFailure))}
            assert run.records_failed == 3 and set(run.details["failed_files"]) == set(sdr)
            assert fails == dict.fromkeys(sdr, 1)
            later = await mirror(svc, config(svc, base, retry_base_s=3600))
            assert later.failed == {}  # backing off: not tried again yet
            # GINA fixes the files; the next due retry stores them
            for g in emu.granules:
                if g.name in sdr:
                    emu.corrupt.discard(g.name)
                    emu.wrong_md5.discard(g.name)
                    emu.truncated.discard(g.name)
                    fixed = emu._make(g.sdr, g.platform, g.facility)
                    g.md5, g.size = fixed.md5, fixed.size
            with svc.sessions.begin() as s:  # time passes: the retries are due
                s.execute(update(GranuleFailure).values(retry_after=utcnow() - timedelta(seconds=1)))
            retry = await mirror(svc, config(svc, base, retry_base_s=3600))
        assert sorted(retry.stored) == sorted(sdr)
        assert items(svc) == sorted(emu.names())
        with svc.sessions() as s:
            assert s.scalar(select(func.count()).select_from(GranuleFailure)) == 0
    finally:
        svc.close()


async def test_restart_in_the_middle_of_a_mirror_resumes_without_duplicates(db_url, tmp_path):
    emu = emulator(tmp_path, file_size=3 << 20)
    emu.add_granules(4)
    faults = FaultInjector(emu.app(), [Fault("delay", path="/products/*", delay_s=0.05, times=None, ranged=True)])
    svc = open_services(db_url, tmp_path)
    with serve_app(faults) as base:
        cfg = config(svc, base, file_concurrency=2)
        stored: list[str] = []
        task: asyncio.Task | None = None

        def on_stored(data):
            stored.append(data["uid"])
            if len(stored) == 3 and task is not None:
                task.cancel()  # the service stops mid-run, downloads in flight

        task = asyncio.create_task(mirror(svc, cfg, hooks=MirrorHooks(stored=on_stored)))
        with pytest.raises(asyncio.CancelledError):
            await task
        svc.close()
        assert 3 <= len(items_after := items(open_services(db_url, tmp_path))) < len(emu.names())
        svc = open_services(db_url, tmp_path)  # the restarted service
        try:
            report = await mirror(svc, config(svc, base))
            assert report.skipped == len(items_after)
            assert items(svc) == sorted(emu.names())
            assert Counter(message_uids(svc)) == Counter(emu.names())
            assert len(await stored_keys(svc)) == len(emu.names())
            with svc.sessions() as s:
                statuses = sorted(r.status for r in list_runs(s, source="gina"))
            assert statuses == ["completed", "failed"]
        finally:
            svc.close()


async def test_two_mirrors_of_one_selection_never_overlap(tmp_path):
    emu = emulator(tmp_path, file_size=1 << 20)
    emu.add_granules(2)
    faults = FaultInjector(emu.app(), [Fault("delay", path="/products/*", delay_s=0.2, times=None)])
    svc = open_services(f"sqlite:///{tmp_path}/c.db", tmp_path)
    try:
        with serve_app(faults) as base:
            first = asyncio.create_task(mirror(svc, config(svc, base)))
            await asyncio.sleep(0.3)
            with pytest.raises(Conflict):
                await mirror(svc, config(svc, base))
            other = await mirror(svc, config(svc, base, platforms=["noaa20"]))  # another selection runs
            await first
            assert other.listed == 0
            assert (await mirror(svc, config(svc, base))).skipped == len(emu.names())  # lock released
    finally:
        svc.close()


async def test_the_next_attempt_of_a_job_takes_over_the_lease_of_its_killed_worker(db_url, tmp_path):
    """A worker killed mid-mirror leaves its lease and a ``running`` run; the job's retry must not skip.

    With a per-attempt lease owner the retry raised Conflict, the job "completed" as
    skipped, and the granules not yet fetched were lost until the lease TTL ran out
    (tests/e2e/test_crash.py found 19 of 24 stored).
    """
    from earthkeep.catalog.runs import INTERRUPTED, start_run
    from earthkeep.granules.locks import acquire
    from earthkeep.jobs.handlers import lease_owner

    emu = emulator(tmp_path)
    emu.add_granules(2)
    svc = open_services(db_url, tmp_path)
    try:
        with serve_app(emu.app()) as base:
            cfg = config(svc, base)
            name = cfg.selection(None).lock_name()
            assert acquire(svc.engine, name, lease_owner(7), ttl_s=600)  # the dead attempt of job 7
            with svc.sessions.begin() as s:
                dead = start_run(s, "gina", collection="viirs-sdr", job_id=7).id
            with pytest.raises(Conflict):  # another job still cannot overlap it
                await mirror(svc, cfg, job_id=8)
            report = await mirror(svc, cfg, job_id=7)
        assert sorted(report.stored) == sorted(emu.names()) == items(svc)
        with svc.sessions() as s:
            runs = {r.id: r for r in list_runs(s, source="gina")}
        assert runs[dead].status == "failed" and runs[dead].error_message == INTERRUPTED
        assert runs[report.run_id].status == "completed" and runs[report.run_id].job_id == 7
    finally:
        svc.close()
