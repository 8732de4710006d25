"""Job queue contract on SQLite and PostgreSQL: dedupe, priority, leases, retries, concurrency."""

import asyncio
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from earthkeep.catalog.tables import Job, utcnow
from earthkeep.errors import Conflict, InvalidInput, NotFound
from earthkeep.jobs.handlers import HandlerRegistry
from earthkeep.jobs.queue import JobQueue
from earthkeep.jobs.worker import Worker


@pytest.fixture
def queue(engine):
    reg = HandlerRegistry()
    reg.register("noop", lambda ctx: None)
    reg.register("once", lambda ctx: None, max_attempts=1)
    return JobQueue(engine, registry=reg, backoff_base_s=0.0)


def test_dedupe_key_is_unique_while_active(queue):
    first = queue.enqueue("noop", {"a": 1}, dedupe_key="gfs:2024010100")
    again = queue.enqueue("noop", {"a": 2}, dedupe_key="gfs:2024010100")
    assert first.created and not again.created and again.job.id == first.job.id
    [job] = queue.claim("w1")
    assert queue.enqueue("noop", dedupe_key="gfs:2024010100").created is False  # running is active
    assert queue.complete(job.id, "w1")
    assert queue.enqueue("noop", dedupe_key="gfs:2024010100").created  # done: a new one may start


def test_unknown_kind_is_refused_with_the_known_ones(queue):
    with pytest.raises(InvalidInput, match="known kinds: noop, once"):
        queue.enqueue("nope")


def test_claim_order_priority_then_age_and_run_after(queue):
    low = queue.enqueue("noop").job
    high = queue.enqueue("noop", priority=10).job
    later = queue.enqueue("noop", priority=99, run_after=utcnow() + timedelta(hours=1)).job
    got = [j.id for j in queue.claim("w", limit=10)]
    assert got == [high.id, low.id]
    assert later.id not in got


def test_claim_respects_kinds(queue):
    queue.enqueue("once")
    assert queue.claim("w", kinds=["noop"]) == []
    assert [j.kind for j in queue.claim("w", kinds=["once"])] == ["once"]


def test_concurrent_claims_never_hand_out_a_job_twice(queue):
    ids = {queue.enqueue("noop", {"i": i}).job.id for i in range(300)}
    claimed: list[int] = []
    lock = threading.Lock()

    def grab(owner: str) -> None:
        while True:
            jobs = queue.claim(owner, limit=5)
            if not jobs:
                return
            with lock:
                claimed.extend(j.id for j in jobs)
            for j in jobs:
                assert queue.complete(j.id, owner)

    threads = [threading.Thread(target=grab, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)
    assert queue.counts()["completed"] == 300


def test_only_the_lease_owner_can_finish(queue):
    queue.enqueue("noop")
    [job] = queue.claim("w1")
    assert queue.complete(job.id, "intruder") is False
    assert queue.fail(job.id, "intruder", "x") is None
    assert queue.get(job.id).status == "running"


def test_expired_lease_is_reclaimed_and_completes_once(queue, engine):
    queue.enqueue("noop")
    [job] = queue.claim("dead-worker", lease_s=0.05)
    time.sleep(0.1)
    assert queue.reap_expired() == 1
    again = queue.get(job.id)
    assert again.status == "pending" and "dead-worker" in again.error
    [job2] = queue.claim("w2")
    assert job2.id == job.id and job2.attempts == 2
    assert queue.complete(job.id, "dead-worker") is False  # the old owner's late result is discarded
    assert queue.complete(job.id, "w2") is True
    assert queue.get(job.id).status == "completed"


def test_expired_lease_with_attempts_spent_fails(queue):
    queue.enqueue("once")
    [job] = queue.claim("w", lease_s=0.01)
    time.sleep(0.05)
    queue.reap_expired()
    assert queue.get(job.id).status == "failed"


def test_failure_backoff_then_permanent_failure(engine):
    reg = HandlerRegistry()
    reg.register("noop", lambda ctx: None)
    q = JobQueue(engine, registry=reg, backoff_base_s=30.0)
    job = q.enqueue("noop", max_attempts=2).job
    [j] = q.claim("w")
    assert q.fail(j.id, "w", "HTTP 500") == "pending"
    retried = q.get(job.id)
    assert retried.run_after > utcnow() + timedelta(seconds=20)  # 30 s ± 20 %
    assert q.claim("w") == []  # not due yet
    with q._write() as s:
        s.execute(update(Job).where(Job.id == job.id).values(run_after=utcnow()))
        s.commit()
    [j] = q.claim("w")
    assert q.fail(j.id, "w", "HTTP 500 again") == "failed"
    final = q.get(job.id)
    assert final.status == "failed" and final.error == "HTTP 500 again" and final.finished_at is not None


def test_permanent_error_is_not_retried(queue):
    job = queue.enqueue("noop").job
    [j] = queue.claim("w")
    assert queue.fail(j.id, "w", "bad payload", retryable=False) == "failed"
    assert queue.get(job.id).attempts == 1


def test_cancel_and_retry(queue):
    pending = queue.enqueue("noop", dedupe_key="k").job
    assert queue.cancel(pending.id).status == "cancelled"
    with pytest.raises(Conflict):
        queue.cancel(pending.id)
    running = queue.enqueue("noop").job
    [j] = queue.claim("w")
    queue.cancel(running.id)
    assert queue.heartbeat(j.id, "w", 30) is False  # the worker learns at its next heartbeat
    assert queue.complete(j.id, "w") is False
    assert queue.retry(pending.id).status == "pending"
    queue.enqueue("noop", dedupe_key="k2")
    with pytest.raises(NotFound):
        queue.cancel(999_999)


def test_list_pages_and_counts(queue):
    for i in range(7):
        queue.enqueue("noop", {"i": i})
    rows, nxt = queue.list(limit=3)
    assert [r.payload["i"] for r in rows] == [6, 5, 4] and nxt
    rows2, _ = queue.list(limit=3, cursor=nxt)
    assert [r.payload["i"] for r in rows2] == [3, 2, 1]
    assert queue.counts()["pending"] == 7
    with pytest.raises(InvalidInput):
        queue.list(status="sleeping")


async def test_worker_runs_n_jobs_concurrently_and_retries_failures(engine):
    reg = HandlerRegistry()
    state = {"now": 0, "max": 0, "flaky": 0}

    async def slow(ctx):
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.2)
        state["now"] -= 1
        return {"i": ctx.payload["i"]}

    async def flaky(ctx):
        state["flaky"] += 1
        if state["flaky"] < 3:
            raise RuntimeError("transient")
        return {"ok": True}

    async def invalid(ctx):
        raise InvalidInput("payload lacks 'url'")

    reg.register("slow", slow)
    reg.register("flaky", flaky)
    reg.register("invalid", invalid)
    q = JobQueue(engine, registry=reg, backoff_base_s=0.0)
    ids = [q.enqueue("slow", {"i": i}).job.id for i in range(8)]
    flaky_id = q.enqueue("flaky").job.id
    invalid_id = q.enqueue("invalid").job.id
    worker = Worker(q, reg, concurrency=4, lease_s=5, poll_s=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        statuses = q.wait_idle_ids([*ids, flaky_id, invalid_id])
        if all(s in ("completed", "failed") for s in statuses.values()):
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert state["max"] == 4
    assert all(q.get(i).status == "completed" for i in ids)
    assert q.get(ids[3]).result == {"i": 3}
    assert q.get(flaky_id).status == "completed" and q.get(flaky_id).attempts == 3
    bad = q.get(invalid_id)
    assert bad.status == "failed" and bad.attempts == 1 and "payload lacks 'url'" in bad.error


async def test_cancelling_a_running_job_stops_its_handler(engine):
    reg = HandlerRegistry()
    stopped = asyncio.Event()

    async def forever(ctx):
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()

    reg.register("forever", forever)
    q = JobQueue(engine, registry=reg)
    job = q.enqueue("forever").job
    worker = Worker(q, reg, concurrency=1, lease_s=0.3, poll_s=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    while q.get(job.id).status != "running":
        await asyncio.sleep(0.02)
    q.cancel(job.id)
    await asyncio.wait_for(stopped.wait(), 5)
    stop.set()
    await task
    assert q.get(job.id).status == "cancelled" and worker.stats["lost"] == 1
