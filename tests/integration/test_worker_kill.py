"""A worker killed with SIGKILL mid-job: the job is reclaimed after its lease and completes exactly once."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from sqlalchemy import text

from earthkeep.jobs.queue import JobQueue

WORKER = textwrap.dedent(
    """
    import asyncio, sys, time
    from sqlalchemy import text
    from earthkeep.catalog.db import create_db_engine
    from earthkeep.jobs.handlers import HandlerRegistry
    from earthkeep.jobs.queue import JobQueue
    from earthkeep.jobs.worker import Worker

    url, marker, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    engine = create_db_engine(url)

    def effect(ctx):
        open(marker, "a").write(f"started {ctx.job.id}\\n")
        if mode == "hang":
            time.sleep(600)
        with engine.begin() as conn:  # the job's visible effect, written once per completed run
            conn.execute(text("INSERT INTO effects (job_id) VALUES (:j)"), {"j": ctx.job.id})
        return {"done": True}

    reg = HandlerRegistry()
    reg.register("effect", effect)
    q = JobQueue(engine, registry=reg)

    async def main():
        stop = asyncio.Event()
        w = Worker(q, reg, concurrency=1, lease_s=1.0, poll_s=0.05, reap_every_s=0.2)
        task = asyncio.create_task(w.run(stop))
        while True:
            await asyncio.sleep(0.1)
            with engine.connect() as conn:
                if conn.execute(text("SELECT count(*) FROM jobs WHERE status='completed'")).scalar():
                    break
        stop.set()
        await task

    asyncio.run(main())
    """
)


def test_sigkilled_worker_job_is_reclaimed_and_done_once(engine, db_url, tmp_path):
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE effects (job_id INTEGER NOT NULL)"))
    job = JobQueue(engine).enqueue("effect", {"x": 1}).job
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    marker = tmp_path / "marker"
    first = subprocess.Popen([sys.executable, str(script), db_url, str(marker), "hang"])
    try:
        deadline = time.monotonic() + 30
        while not (marker.exists() and "started" in marker.read_text()):
            assert time.monotonic() < deadline, "first worker never started the job"
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert JobQueue(engine).get(job.id).status == "running"  # the dead worker still holds the lease
    second = subprocess.run([sys.executable, str(script), db_url, str(marker), "work"], timeout=60)
    assert second.returncode == 0
    done = JobQueue(engine).get(job.id)
    assert done.status == "completed" and done.attempts == 2
    assert "lease expired" in (done.error or "")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM effects")).scalar() == 1
    assert marker.read_text().count("started") == 2
