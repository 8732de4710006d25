"""kill -9 across domains: SIGKILL a real process mid-work, start it again, check nothing was lost or mangled.

Each scenario runs ``EARTHKEEP_CRASH_TRIALS`` trials (default 2; the figures in
docs/operations.md come from 20). A trial gets a fresh embedded catalog and store,
starts the real process (``earthkeep serve`` or ``earthkeep rescue node``) in its
own session, asks for the work, waits a random delay drawn from a RNG seeded
with ``EARTHKEEP_CRASH_SEED`` (default 19) and SIGKILLs the process group. Then it
starts the process again, lets the work finish and checks:

* 0 lost: every expected item / observation / file is in the catalog;
* 0 duplicated: counts by each domain's unique key equal the distinct count;
* 0 corrupt or partial object: every catalog asset's stored bytes match its
  size and sha256, and no ``.part`` file sits in the store as an object;
* no job stuck ``running`` or ``pending``: every job is ``completed``, or
  ``failed`` with a non-empty error; no rescue lease left ``active``.

Worker leases are 1 s (``EARTHKEEP_LEASE_SECONDS``), so a dead worker's job is
reaped and claimed again within the worker's reap period (5 s) after restart.
The emulators run in this process (shared by every trial); the expected set of a
scenario is what an uninterrupted run of the same request stores.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from _procs import EARTHKEEP, Process

from earthkeep.testbed.emulators import Options, start
from earthkeep.testbed.runner import serve_app
from earthkeep.testbed.servers import free_port

TRIALS = int(os.environ.get("EARTHKEEP_CRASH_TRIALS", "2"))
SEED = int(os.environ.get("EARTHKEEP_CRASH_SEED", "19"))
AREA = {"type": "Feature", "properties": {"name": "Nairobi"},  # inside the LAADS emulator's tile h21v09
        "geometry": {"type": "Polygon",
                     "coordinates": [[[36.6, -1.45], [37.1, -1.45], [37.1, -1.1], [36.6, -1.1], [36.6, -1.45]]]}}
FIGURES: dict[str, list[dict[str, Any]]] = {}


@pytest.fixture(scope="module")
def emulated(tmp_path_factory) -> Iterator[dict[str, str]]:
    """GFS, GINA, LAADS and CKAN emulators on loopback; the settings that point earthkeep at them."""
    root = tmp_path_factory.mktemp("testbed")
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        for name in ("gfs", "gina", "laads", "ckan"):
            running = start(name, Options(root=root / name, datasets=6))
            env |= running.environment(stack.enter_context(serve_app(running.app)))
        yield env


def _base_env(root: Path, port: int, emulated: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "DATABASE_URL", "EARTHKEEP_"))}
    env.update(emulated)
    env.update({
        "DATABASE_URL": f"sqlite:///{root}/earthkeep.db", "EARTHKEEP_STORE_DIR": str(root / "store"),
        "EARTHKEEP_PARTIAL_DIR": str(root / "partial"), "EARTHKEEP_API_PORT": str(port),
        "EARTHKEEP_ALLOW_PRIVATE_URLS": "true", "EARTHKEEP_LEASE_SECONDS": "1", "EARTHKEEP_POLL_SECONDS": "0.1",
        "EARTHKEEP_BACKOFF_SECONDS": "0.2", "EARTHKEEP_RETRIES": "2", "EARTHKEEP_LOG_FORMAT": "json",
        "EARTHKEEP_POSTTROLL_ADDRESS": f"tcp://127.0.0.1:{free_port()}",
        "HISTORICAL_DAYS": "0", "FORECAST_HOURS": "9", "FORCING_COLLECT_ON_START": "false",
        "GINA_BACKFILL_DAYS": "1", "EARTHKEEP_RESCUE_LEASE_SECONDS": "5", "EARTHKEEP_RESCUE_REPLICATION": "1",
    })
    return env


@dataclass
class Site:
    """One trial's catalog, store and service."""

    root: Path
    env: dict[str, str]
    port: int
    keys: dict[str, str] = field(default_factory=dict)
    serve: Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.root / "earthkeep.db"

    def cli(self, *args: str) -> str:
        r = subprocess.run([*EARTHKEEP, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def http(self, scope: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30, headers={"Authorization": f"Bearer {self.keys[scope]}"})

    def start_serve(self, roles: str = "api,worker") -> Process:
        self.serve = Process(["serve", "--role", roles], self.env, self.root / "serve.log")
        deadline = time.monotonic() + 60
        while True:
            assert self.serve.proc.poll() is None, (self.root / "serve.log").read_text()[-3000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return self.serve
            assert time.monotonic() < deadline, "earthkeep serve did not answer /health"
            time.sleep(0.1)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.db, timeout=30)) as conn:
            return conn.execute(sql, args).fetchall()


def make_site(root: Path, emulated: dict[str, str], scopes: tuple[str, ...] = ("admin",),
              template: Site | None = None) -> Site:
    """A fresh catalog (migrated, with keys) under ``root``; a copy of ``template``'s empty one when given."""
    root.mkdir(parents=True)
    port = free_port()
    site = Site(root, _base_env(root, port, emulated), port)
    if template is not None:
        shutil.copyfile(template.db, site.db)
        site.keys = dict(template.keys)
        return site
    site.cli("db", "upgrade")
    for scope in scopes:
        real = scope.rstrip("0123456789")  # "node2": a second key of the node scope
        site.keys[scope] = site.cli("keys", "create", "--scope", real, "--name", f"crash-{scope}").split()[-1]
    return site


def wait_jobs_settled(site: Site, timeout: float = 60) -> list[tuple[Any, ...]]:
    """Every job completed or failed (none pending or running), read from the catalog."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = site.query("SELECT id, kind, status, error, attempts FROM jobs")
        if jobs and all(j[2] in ("completed", "failed", "cancelled") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, f"jobs never settled: {jobs}"
        time.sleep(0.2)


def check_jobs(jobs: list[tuple[Any, ...]]) -> dict[str, int]:
    stuck = [j for j in jobs if j[2] in ("pending", "running")]
    reasonless = [j for j in jobs if j[2] == "failed" and not (j[3] or "").strip()]
    assert not stuck and not reasonless, jobs
    return {"jobs_failed": sum(1 for j in jobs if j[2] == "failed"), "stuck": len(stuck)}


def check_store(site: Site) -> dict[str, int]:
    """Every catalog asset's bytes match its size and sha256; no ``.part`` file is an object."""
    store = site.root / "store"
    corrupt = []
    for key, size, sha in site.query("SELECT store_key, size, sha256 FROM assets"):
        path = store / key
        data = path.read_bytes() if path.is_file() else None
        if data is None or len(data) != size or (sha and hashlib.sha256(data).hexdigest() != sha):
            corrupt.append(key)
    parts = [str(p) for p in store.rglob("*.part")] if store.exists() else []
    parts += [k for (k,) in site.query("SELECT store_key FROM assets WHERE store_key LIKE '%.part'")]
    assert not corrupt and not parts, (corrupt, parts)
    return {"corrupt": len(corrupt) + len(parts)}


def check_unique(site: Site, table: str, key: str) -> dict[str, int]:
    (total, distinct), = site.query(f"SELECT count(*), count(DISTINCT {key}) FROM {table}")
    assert total == distinct, f"{table}: {total - distinct} duplicated by {key}"
    return {"dup": total - distinct}


@dataclass
class Scenario:
    """A domain's crash trial: how to start the work, what it must store, when it is done."""

    name: str
    delay: tuple[float, float]  # the kill: (min s, fraction of the uninterrupted run's work time) after it started
    run: Callable[[Site, float | None], dict[str, Any]]


# -- (a) GFS collection ------------------------------------------------------------------------------

def gfs_run(site: Site, kill_after: float | None) -> dict[str, Any]:
    site.start_serve()
    t0 = time.monotonic()
    with site.http() as c:
        r = c.post("/jobs", json={"kind": "forcing.collect", "payload": {"history": False}})
        assert r.status_code == 202, r.text
    killed, jobs, work_s = _kill_and_settle(site, kill_after, t0)
    files = {(str(d), c, str(v)) for d, c, v in
             site.query("SELECT forecast_date, forecast_cycle, valid_time_start FROM aggregator_datasets")}
    out = {"items": len(files), "work_s": work_s, "killed": killed, **check_jobs(jobs),
           **check_store(site),
           **check_unique(site, "aggregator_datasets", "coalesce(forecast_date,'')||forecast_cycle||valid_time_start"
                                                       "||coalesce(data_type,'')")}
    for path, size in site.query("SELECT file_path, file_size_bytes FROM aggregator_datasets"):
        f = site.root / "store" / path
        assert f.is_file() and (size is None or f.stat().st_size == size), (path, size)
    return out


def _maybe_kill(site: Site, kill_after: float | None) -> str:
    """SIGKILL serve ``kill_after`` s from now; start it again. What the queue held at the kill.

    ``running`` (a job was running), ``pending`` (none running, but work was still queued: a
    pipeline between its steps) or ``idle``; ``""`` when there was no kill.
    """
    if kill_after is None:
        return ""
    time.sleep(kill_after)
    running, pending = site.query("SELECT coalesce(sum(status = 'running'), 0), coalesce(sum(status = 'pending'), 0) "
                                  "FROM jobs")[0]
    site.serve.kill9()
    site.start_serve()
    return "running" if running else "pending" if pending else "idle"


def _kill_and_settle(site: Site, kill_after: float | None, t0: float) -> tuple[str, list[tuple[Any, ...]], float]:
    """The common end of a serve-killing trial: maybe kill and restart, wait for every job, stop serve."""
    killed = _maybe_kill(site, kill_after)
    jobs = wait_jobs_settled(site)
    work_s = time.monotonic() - t0
    site.serve.stop()
    return killed, jobs, work_s


# -- (b) granule mirror -----------------------------------------------------------------------------

def granules_run(site: Site, kill_after: float | None) -> dict[str, Any]:
    site.start_serve()
    t0 = time.monotonic()
    with site.http() as c:
        r = c.post("/jobs", json={"kind": "granules.mirror", "payload": {}})
        assert r.status_code == 202, r.text
    killed, jobs, work_s = _kill_and_settle(site, kill_after, t0)
    n = site.query("SELECT count(*) FROM items WHERE collection = 'viirs-sdr'")[0][0]
    return {"items": n, "work_s": work_s, "killed": killed, **check_jobs(jobs), **check_store(site),
            **check_unique(site, "items", "collection||'/'||item_id"),
            **check_unique(site, "assets", "store_key")}


# -- (d) nightlights ---------------------------------------------------------------------------------

def nightlights_run(site: Site, kill_after: float | None) -> dict[str, Any]:
    site.start_serve()
    t0 = time.monotonic()
    with site.http() as c:
        area = c.post("/areas", json=AREA)
        assert area.status_code == 201, area.text
        r = c.post("/nightlights/jobs", json={"area_id": area.json()["id"], "start_month": "2024-01",
                                              "end_month": "2024-01"})
        assert r.status_code == 202, r.text
    killed, jobs, work_s = _kill_and_settle(site, kill_after, t0)
    n = site.query("SELECT count(*) FROM nl_results")[0][0]
    return {"items": n, "work_s": work_s, "killed": killed, **check_jobs(jobs), **check_store(site),
            **check_unique(site, "nl_results", "area_id||'/'||month||'/'||source"),
            **check_unique(site, "nl_inputs", "area_id||'/'||month||'/'||source||'/'||coalesce(status,'')")}


# -- (e) embedded ingest -----------------------------------------------------------------------------

STATIONS = ("CRASH-1", "CRASH-2")
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def ingest_run(site: Site, kill_after: float | None) -> dict[str, Any]:
    site.start_serve()
    with site.http() as c:
        for sid in STATIONS:
            r = c.post("/stations", json={"id": sid, "name": sid, "latitude": 1.0, "longitude": 2.0})
            assert r.status_code in (200, 201), r.text
    acked: set[tuple[str, str]] = set()
    sent: list[list[dict[str, Any]]] = []
    stop = threading.Event()
    sender = threading.Thread(target=_send_batches, args=(site, acked, sent, stop), daemon=True)
    t0 = time.monotonic()
    sender.start()
    killed = ""
    if kill_after is not None:
        time.sleep(kill_after)
        killed = "running" if sender.is_alive() else "idle"  # the station was still posting
        site.serve.kill9()
        site.start_serve()
    sender.join(120)
    work_s = time.monotonic() - t0
    stop.set()
    # resend everything once after the restart: a client retries what it is not sure of; no duplicate may appear
    with site.http() as c:
        for batch in sent:
            assert c.post("/observations", json=batch).status_code == 202
    site.serve.stop()
    stored = {(s, t) for s, t in site.query("SELECT station_id, ts FROM ingest_observations")}
    lost = len(acked) - len(acked & {(s, _norm(t)) for s, t in stored})
    assert lost == 0, f"{lost} acknowledged observations lost"
    expected = len(sent) * 10
    assert len(stored) == expected, (len(stored), expected)
    hourly = site.query("SELECT coalesce(sum(n), 0) FROM ingest_hourly")[0][0]
    assert hourly == len(stored), f"hourly rollups count {hourly} observations, {len(stored)} stored"
    return {"items": len(stored), "work_s": work_s, "acked": len(acked), "lost": lost, "killed": killed,
            **check_unique(site, "ingest_observations", "station_id||ts"), "corrupt": 0}


def _norm(ts: str) -> str:
    return datetime.fromisoformat(ts.replace(" ", "T")).astimezone(UTC).isoformat() if ts else ts


def _send_batches(site: Site, acked: set[tuple[str, str]], sent: list[list[dict[str, Any]]],
                  stop: threading.Event) -> None:
    """60 batches of 10 observations; a batch refused by a dead server is resent once it answers."""
    with site.http() as c:
        for b in range(60):
            batch = [{"station_id": STATIONS[i % 2], "timestamp": (T0 + timedelta(minutes=10 * b + i)).isoformat(),
                      "temperature": 20.0 + i} for i in range(10)]
            sent.append(batch)
            while not stop.is_set():
                try:
                    r = c.post("/observations", json=batch)
                except httpx.TransportError:
                    time.sleep(0.1)
                    continue
                if r.status_code == 202:
                    acked.update((o["station_id"], _norm(o["timestamp"])) for o in batch)
                    break
                time.sleep(0.1)


# -- (c) rescue node ---------------------------------------------------------------------------------

def rescue_run(site: Site, kill_after: float | None) -> dict[str, Any]:
    site.start_serve()
    with site.http() as c:
        assert c.post("/update-ckan", json={"full": True}).status_code in (200, 202)
    wait_jobs_settled(site)
    assets = site.query("SELECT count(*) FROM rescue_assets WHERE pool = 1")[0][0]
    assert assets > 0
    node_dir = site.root / "node"

    def node(token: str) -> Process:
        return Process(["rescue", "node", "--server", site.base, "--token", token, "--dir", str(node_dir),
                        "--once", "--batch", "100", "--allow-private"], site.env, site.root / "node.log")

    killed = ""
    t0 = time.monotonic()
    first = node(site.keys["node"])
    if kill_after is not None:
        time.sleep(kill_after)
        killed = "running" if first.proc.poll() is None else "idle"
        first.kill9()
    else:
        assert first.proc.wait(120) == 0, (site.root / "node.log").read_text()[-3000:]
        first.logf.close()
    work_s = time.monotonic() - t0
    # a killed node's leases expire (5 s) and the reaper returns their assets to the pool for another node
    deadline = time.monotonic() + 60
    while site.query("SELECT count(*) FROM rescue_allocations WHERE status = 'active'")[0][0]:
        assert time.monotonic() < deadline, "a dead node's lease is held forever"
        with site.http() as c:
            c.post("/jobs", json={"kind": "rescue.reap", "payload": {}})
        time.sleep(1.0)
    again = node(site.keys["node2"])
    assert again.proc.wait(120) == 0, (site.root / "node.log").read_text()[-3000:]
    again.logf.close()
    jobs = wait_jobs_settled(site)
    site.serve.stop()
    done = site.query("SELECT count(DISTINCT asset_id) FROM rescue_copies")[0][0]
    missing = site.query("SELECT count(*) FROM rescue_assets a WHERE pool = 1 AND NOT EXISTS "
                         "(SELECT 1 FROM rescue_copies c WHERE c.asset_id = a.id)")[0][0]
    active = site.query("SELECT count(*) FROM rescue_allocations WHERE status = 'active'")[0][0]
    assert active == 0
    corrupt = 0
    for size, sha in site.query("SELECT size, sha256 FROM rescue_copies"):
        corrupt += not any(p.stat().st_size == size and hashlib.sha256(p.read_bytes()).hexdigest() == sha
                           for p in node_dir.rglob("*") if p.is_file() and p.stat().st_size == size)
    parts = [p for p in node_dir.rglob("*.part") if ".partial" not in p.parts]
    assert corrupt == 0 and not parts, (corrupt, parts)
    return {"items": done, "work_s": work_s, "upstream_failed": missing, "killed": killed,
            "stuck_leases": active,
            **check_jobs(jobs), **check_unique(site, "rescue_copies", "asset_id||'/'||node_id"),
            "corrupt": corrupt}


SCENARIOS = [
    Scenario("gfs", (0.05, 0.9), gfs_run),
    Scenario("granules", (0.05, 0.9), granules_run),
    Scenario("rescue", (0.3, 0.9), rescue_run),
    Scenario("nightlights", (0.05, 0.9), nightlights_run),
    Scenario("ingest", (0.05, 0.9), ingest_run),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_kill9_then_restart_loses_nothing(scenario: Scenario, emulated, tmp_path):
    scopes = ("admin", "node", "node2") if scenario.name == "rescue" else ("admin",)
    rng = random.Random(f"{SEED}:{scenario.name}")
    template = make_site(tmp_path / "template", emulated, scopes)
    ref = scenario.run(make_site(tmp_path / "reference", emulated, template=template), None)
    assert ref["items"] > 0, ref
    rows = []
    for i in range(TRIALS):
        # a kill point inside the work as the uninterrupted run timed it
        delay = rng.uniform(scenario.delay[0], max(scenario.delay[0] * 2, ref["work_s"] * scenario.delay[1]))
        started = time.monotonic()
        out = scenario.run(make_site(tmp_path / f"trial-{i}", emulated, template=template), delay)
        out.setdefault("lost", max(ref["items"] - out["items"], 0))
        assert out["items"] == ref["items"], (out, ref)
        rows.append({"delay": round(delay, 2), "seconds": round(time.monotonic() - started, 1), **out})
    FIGURES[scenario.name] = rows
    print(f"\ncrash {scenario.name}: {rows}")

