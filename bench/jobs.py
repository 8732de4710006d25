"""Job queue throughput: claims/s and completions/s of no-op jobs with 8 worker processes.

Runs on SQLite (embedded default) and on PostgreSQL (a throwaway cluster started
from Debian's binaries, fsync off as in the test fixtures), in one run, and checks
that no job ran twice. Two measurements per backend:

* claim-only: 8 processes call ``JobQueue.claim(limit=1)`` in a tight loop and
  complete each job at once (the raw cost of the SKIP LOCKED / BEGIN IMMEDIATE path);
* worker: 8 processes each run the real ``Worker`` loop (concurrency 8, batch claims,
  heartbeats, completion) over a no-op handler.

    .venv/bin/python bench/jobs.py [--jobs 20000] [--workers 8] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, insert, select

from earthkeep.catalog.db import create_db_engine
from earthkeep.catalog.migrate import upgrade
from earthkeep.catalog.tables import Job, utcnow
from earthkeep.jobs.handlers import HandlerRegistry
from earthkeep.jobs.queue import JobQueue
from earthkeep.jobs.worker import Worker
from earthkeep.logs import configure_logging


def fill(url: str, n: int) -> None:
    engine = create_db_engine(url)
    upgrade(engine)
    now = utcnow()
    rows = [{"kind": "noop", "payload": {"i": i}, "priority": 0, "status": "pending", "attempts": 0,
             "max_attempts": 3, "run_after": now, "created_at": now} for i in range(n)]
    with engine.begin() as conn:
        conn.execute(Job.__table__.delete())
        for i in range(0, n, 5000):
            conn.execute(insert(Job), rows[i:i + 5000])
    engine.dispose()


def _registry() -> HandlerRegistry:
    reg = HandlerRegistry()

    async def noop(ctx: object) -> None:
        return None

    reg.register("noop", noop)
    return reg


def claim_loop(url: str, owner: str, start: mp.Event, out: mp.Queue) -> None:  # type: ignore[type-arg]
    configure_logging("WARNING")
    queue = JobQueue(create_db_engine(url, pool_size=2))
    start.wait()
    done = 0
    while True:
        jobs = queue.claim(owner, limit=1, lease_s=60)
        if not jobs:
            break
        for job in jobs:
            done += queue.complete(job.id, owner)
    out.put(done)


def worker_loop(url: str, owner: str, start: mp.Event, out: mp.Queue) -> None:  # type: ignore[type-arg]
    configure_logging("WARNING")
    engine = create_db_engine(url, pool_size=10)
    reg = _registry()
    queue = JobQueue(engine, registry=reg)

    async def main() -> int:
        worker = Worker(queue, reg, concurrency=8, lease_s=60, poll_s=0.01, owner=owner, reap_every_s=60)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        while True:
            await asyncio.sleep(0.05)
            counts = await asyncio.to_thread(queue.counts)
            if counts["pending"] == 0 and counts["running"] == 0:
                break
        stop.set()
        await task
        return worker.stats["completed"]

    start.wait()
    out.put(asyncio.run(main()))


def measure(url: str, n: int, workers: int, target) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    fill(url, n)
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(url, f"bench-{i}", start, out)) for i in range(workers)]
    for p in procs:
        p.start()
    time.sleep(2.0)  # let every process import and connect
    t0 = time.perf_counter()
    start.set()
    total = sum(out.get(timeout=600) for _ in procs)
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    verify(url, n, total)
    return elapsed, total


def verify(url: str, n: int, reported: int) -> None:
    engine = create_db_engine(url)
    with engine.connect() as conn:
        completed = conn.execute(select(func.count()).where(Job.status == "completed")).scalar()
        twice = conn.execute(select(func.count()).where(Job.attempts != 1)).scalar()
    engine.dispose()
    if completed != n or twice != 0 or reported != n:
        raise SystemExit(f"FAILED: completed={completed} reported={reported} ran-more-than-once={twice} of {n}")


def run_backend(name: str, url: str, n: int, workers: int) -> list[tuple[str, str, float]]:
    out = []
    for label, target in (("claim-only", claim_loop), ("worker", worker_loop)):
        elapsed, _ = measure(url, n, workers, target)
        rate = n / elapsed
        out.append((name, label, rate))
        print(f"{name:11s} {label:11s} {n} jobs, {workers} procs: {elapsed:6.2f} s  "
              f"{rate:8.0f} claims/s = completions/s  (no job ran twice)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg-url", help="use this PostgreSQL database instead of starting a throwaway cluster")
    args = ap.parse_args()
    configure_logging("WARNING")
    results = []
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in backends:
            results += run_backend("sqlite", f"sqlite:///{Path(tmp)}/bench.db", args.jobs, args.workers)
        if "postgresql" in backends:
            if args.pg_url:
                results += run_backend("postgresql", args.pg_url, args.jobs, args.workers)
            else:
                from earthkeep.testbed.servers import PostgresServer

                with PostgresServer() as pg:
                    results += run_backend("postgresql", pg.create_database("bench_jobs"), args.jobs, args.workers)
    rates = {(b, m): r for b, m, r in results}
    if ("postgresql", "worker") in rates:
        print(f"goal on PostgreSQL >= 1000 claims/s: worker loop {rates['postgresql', 'worker']:.0f}/s "
              f"({rates['postgresql', 'worker'] / 1000:.1f}x the goal)")
    if ("sqlite", "worker") in rates and ("postgresql", "worker") in rates:
        print(f"ratio postgresql/sqlite (worker loop): {rates['postgresql', 'worker'] / rates['sqlite', 'worker']:.2f}")


if __name__ == "__main__":
    main()
