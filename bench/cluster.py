"""Cluster scaling: jobs/s with 1, 2 and 3 ``earthkeep serve --role worker`` processes, observations/s with
1, 2 and 3 ``earthkeep weather consume`` processes, on the real servers.

Throwaway PostgreSQL (fsync off, as in the tests), NATS JetStream and SeaweedFS S3 from
``earthkeep.testbed.servers``, and ``earthkeep testbed serve files`` (its own process) as the
remote host. Every earthkeep role is a separate process started with the CLI, as in production.

* jobs: N ``fetch`` jobs (a 64 KiB file each: HTTP GET, S3 put, catalog item) are inserted in one
  transaction once the workers are up; jobs/s = N / time until every job is completed.
* observations: one ``serve --role api`` (no in-process consumer) takes N observations in batches
  of 1,000 from 4 concurrent clients; observations/s = N / time from the first POST until every
  row is in PostgreSQL. Each run has its own stream and database.

CPU seconds of every process (psutil, children included) are measured over each run, so the
table shows where the time goes on this 2-core machine.

    .venv/bin/python bench/cluster.py [--jobs 400] [--obs 200000] [--counts 1,2,3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from ingest import cpu_of  # bench/ingest.py: CPU of a process and its children
from sqlalchemy import insert, text

from earthkeep.catalog.db import create_db_engine
from earthkeep.catalog.tables import Job, utcnow
from earthkeep.testbed.servers import NatsServer, PostgresServer, SeaweedS3Server, free_port, port_open, wait_until

EARTHKEEP = [sys.executable, "-m", "earthkeep.cli.main"]
FILE_SIZE = 64 * 1024
STATIONS = [f"B-{i:03d}" for i in range(100)]


class CpuMeter:
    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self.start = {k: sum(map(cpu_of, v)) for k, v in pids.items()}

    def used(self) -> dict[str, float]:
        return {k: round(sum(map(cpu_of, v)) - self.start[k], 2) for k, v in self.pids.items()}


class Roles:
    """earthkeep processes of one run, stopped together."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.procs = env, logs, {}  # type: ignore[var-annotated]

    def start(self, name: str, *args: str, **extra: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen([*EARTHKEEP, *args], env={**self.env, **extra}, stdout=log,
                                            stderr=subprocess.STDOUT)
        return self.procs[name]

    def pids(self, prefix: str) -> list[int]:
        return [p.pid for n, p in self.procs.items() if n.startswith(prefix)]

    def stop(self) -> None:
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def cli(env: dict[str, str], *args: str) -> str:
    r = subprocess.run([*EARTHKEEP, *args], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode:
        raise SystemExit(f"earthkeep {' '.join(args)} failed: {r.stderr[-2000:]}")
    return r.stdout


def new_site(pg: PostgresServer, base: dict[str, str], name: str) -> tuple[dict[str, str], str]:
    """A fresh migrated database; (environment, admin key)."""
    env = {**base, "DATABASE_URL": pg.create_database(name)}
    cli(env, "db", "upgrade")
    return env, cli(env, "keys", "create", "--scope", "admin", "--name", "bench").split()[-1]


def poll(check: Callable[[], bool], timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(every)


_ENGINES: dict[str, Any] = {}


def scalar(url: str, sql: str) -> Any:
    engine = _ENGINES.get(url) or _ENGINES.setdefault(url, create_db_engine(url, pool_size=1))
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


# ------------------------------------------------------------------------------------------------ jobs

def jobs_run(pg: PostgresServer, base: dict[str, str], files_url: str, workers: int, n: int, tmp: Path,
             servers: dict[str, list[int]]) -> dict[str, Any]:
    env, _ = new_site(pg, base, f"jobs{workers}_{os.getpid()}")
    url = env["DATABASE_URL"]
    roles = Roles(env, tmp)
    try:
        for i in range(workers):
            roles.start(f"worker-{i}", "serve", "--role", "worker", EARTHKEEP_PARTIAL_DIR=str(tmp / f"partial{i}"))
        poll(lambda: scalar(url, "SELECT count(*) FROM service_instances") >= workers, 90, 0.2)
        now = utcnow()
        rows = [{"kind": "fetch", "payload": {"url": f"{files_url}/f{i % 200}.bin", "collection": "bench",
                                              "item_id": f"w{workers}-{i}", "key": f"bench/w{workers}/{i}.bin"},
                 "priority": 0, "status": "pending", "attempts": 0, "max_attempts": 3, "run_after": now,
                 "created_at": now} for i in range(n)]
        engine = create_db_engine(url)
        meter = CpuMeter({"postgres": servers["postgres"], "s3": servers["s3"], "files": servers["files"],
                          "workers": roles.pids("worker")})
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(insert(Job), rows)
        engine.dispose()
        poll(lambda: scalar(url, "SELECT count(*) FROM jobs WHERE status IN ('completed', 'failed')") >= n, 600)
        wall = time.perf_counter() - t0
        cpu = meter.used()
        done = scalar(url, "SELECT count(*) FROM jobs WHERE status = 'completed'")
        items = scalar(url, "SELECT count(*) FROM items WHERE collection = 'bench'")
        if done != n or items != n:
            raise SystemExit(f"{workers} workers: {done} of {n} jobs completed, {items} items")
        retried = scalar(url, "SELECT count(*) FROM jobs WHERE attempts > 1")
        return {"processes": workers, "wall_s": wall, "rate": n / wall, "cpu": cpu, "retried": retried}
    finally:
        roles.stop()


# -------------------------------------------------------------------------------------------- ingest

def batches(n: int) -> list[bytes]:
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    records = [{"station_id": STATIONS[i % len(STATIONS)],
                "timestamp": (t0 + timedelta(seconds=i // len(STATIONS))).isoformat(), "temperature": 15.0}
               for i in range(n)]
    return [json.dumps(records[i:i + 1000]).encode() for i in range(0, n, 1000)]


async def post_all(base_url: str, key: str, payloads: list[bytes], clients: int = 4) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            while (await client.post("/observations", content=body, headers=headers)).status_code != 202:
                await asyncio.sleep(0.1)

    async with httpx.AsyncClient(base_url=base_url, timeout=120, trust_env=False) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))


def ingest_run(pg: PostgresServer, base: dict[str, str], consumers: int, payloads: list[bytes], n: int,
               tmp: Path, servers: dict[str, list[int]]) -> dict[str, Any]:
    tag = f"c{consumers}_{os.getpid()}"
    env, key = new_site(pg, base, f"obs{tag}")
    env |= {"EARTHKEEP_INGEST_STREAM": f"OBS_{tag}", "EARTHKEEP_INGEST_SUBJECT": f"bench.{tag}",
            "EARTHKEEP_INGEST_DURABLE": f"d_{tag}"}
    url, port = env["DATABASE_URL"], free_port()
    roles = Roles(env, tmp)
    try:
        roles.start("api", "serve", "--role", "api", "--port", str(port))
        wait_until(lambda: port_open(port), timeout=90, what="the API")
        base_url = f"http://127.0.0.1:{port}"
        stations = [{"id": s, "name": s, "latitude": 1.0, "longitude": 2.0} for s in STATIONS]
        r = httpx.post(f"{base_url}/stations", json=stations, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        r.raise_for_status()
        for i in range(consumers):
            roles.start(f"consumer-{i}", "weather", "consume")
        ingest_key = cli(env, "keys", "create", "--scope", "ingest", "--name", "bench-ingest").split()[-1]
        time.sleep(5)  # the consumers connect and bind their durable
        meter = CpuMeter({"postgres": servers["postgres"], "nats": servers["nats"], "api": roles.pids("api"),
                          "consumers": roles.pids("consumer"), "clients": [os.getpid()]})
        t0 = time.perf_counter()
        asyncio.run(post_all(base_url, ingest_key, payloads))
        posted = time.perf_counter() - t0
        poll(lambda: scalar(url, "SELECT count(*) FROM ingest_observations") >= n, 600, 0.1)
        wall = time.perf_counter() - t0
        cpu = meter.used()
        stored = scalar(url, "SELECT count(*) FROM ingest_observations")
        if stored != n:
            raise SystemExit(f"{consumers} consumers: {stored} rows for {n} observations")
        return {"processes": consumers, "wall_s": wall, "post_s": posted, "rate": n / wall, "cpu": cpu}
    finally:
        roles.stop()


# ---------------------------------------------------------------------------------------------- main

@contextlib.contextmanager
def file_server(root: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    root.mkdir()
    for i in range(200):
        (root / f"f{i}.bin").write_bytes(os.urandom(FILE_SIZE))
    port = free_port()
    proc = subprocess.Popen([*EARTHKEEP, "testbed", "serve", "files", "--dir", str(root), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port), timeout=60, what="the file server")
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(20)


def table(title: str, unit: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    first = rows[0]["rate"]
    cpu_keys = list(rows[0]["cpu"])
    print(f"{'processes':>9} {unit:>10} {'ratio':>6} {'wall s':>7}  " + "  ".join(f"{k + ' cpu s':>14}"
                                                                         for k in cpu_keys))
    for r in rows:
        print(f"{r['processes']:>9} {r['rate']:>10.1f} {r['rate'] / first:>5.2f}x {r['wall_s']:>7.2f}  "
              + "  ".join(f"{r['cpu'][k]:>14.2f}" for k in cpu_keys))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=400)
    ap.add_argument("--obs", type=int, default=200_000)
    ap.add_argument("--counts", default="1,2,3")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    print(f"load average before: {os.getloadavg()}, cpus: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp_s, PostgresServer() as pg, NatsServer() as nats, \
            SeaweedS3Server() as s3:
        tmp = Path(tmp_s)
        bucket = s3.create_bucket("bench-cluster")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "DATABASE_URL", "EARTHKEEP_"))}
        base |= {"S3_ENDPOINT": s3.url, "S3_ACCESS_KEY": s3.access_key, "S3_SECRET_KEY": s3.secret_key,
                 "S3_REGION": s3.region, "S3_BUCKET": bucket, "NATS_URL": nats.url,
                 "EARTHKEEP_INGEST_BROKER": "nats", "EARTHKEEP_INGEST_API_CONSUMERS": "0",
                 "EARTHKEEP_ALLOW_PRIVATE_URLS": "true", "EARTHKEEP_POLL_SECONDS": "0.05", "LOG_LEVEL": "WARNING",
                 "EARTHKEEP_LOG_FORMAT": "json", "FORCING_COLLECT_ON_START": "false"}
        with file_server(tmp / "files") as (files_url, files_proc):
            servers = {"postgres": [pg._postmaster_pid() or 0], "s3": [s3.pid or 0], "files": [files_proc.pid],
                       "nats": [nats.pid or 0]}
            jobs = [jobs_run(pg, base, files_url, k, args.jobs, tmp, servers) for k in counts]
        payloads = batches(args.obs)
        obs = [ingest_run(pg, base, k, payloads, args.obs, tmp, servers) for k in counts]
    table(f"fetch jobs ({args.jobs} x 64 KiB: HTTP GET, S3 put, catalog item), EARTHKEEP_WORKERS=4 each",
          "jobs/s", jobs)
    table(f"observations ({args.obs:,} through one API and NATS JetStream into PostgreSQL)", "obs/s", obs)
    print(f"\nload average after: {os.getloadavg()}")
    print(json.dumps({"jobs": jobs, "observations": obs}, default=str))


if __name__ == "__main__":
    main()
