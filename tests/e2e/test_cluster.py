"""Distributed mode end to end: every role its own process (its own network namespace where possible).

Real PostgreSQL+PostGIS, SeaweedFS S3, NATS JetStream and Redis (the session fixtures); the GFS, GINA,
LAADS and CKAN emulators. Processes: two ``serve --role api`` (the test spreads requests over both),
three ``--role worker``, one ``--role scheduler``, one ``--role granules``, one ``weather consume``
and, once discovery is done, two ``rescue node`` processes. Where ``ip netns add`` works each role
process runs in its own namespace (see ``_procs.Hosts``); otherwise they are plain processes on
127.0.0.1. The mode is printed and kept in ``REPORT``.

The workload of every domain runs at once: a GFS cycle, ``EARTHKEEP_CLUSTER_OBS`` observations
(default 20,000; the full run is 200,000) posted through both API processes, a GINA granule mirror
with a posttroll subscriber counting messages, a CKAN discovery then two rescue nodes, a
nightlights job for 3 areas x 3 months. At seeded random points (``EARTHKEEP_CLUSTER_SEED``) one
worker, one API process and the consumer are SIGKILLed and started again. Then exactly:

* every catalog item once (by collection/item id) and every asset's object in S3 with its size;
* every observation once: count = distinct (station, ts) = posted; hourly rollups count them all;
* every granule file message received by the subscriber, once, and one per mirrored granule;
* no rescue asset allocated beyond its replication target, no lease left active;
* no job left pending or running (failed ones carry an error);
* nightlights metrics identical to an embedded one-process run (SQLite, local store) of the same job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import sqlalchemy as sa
import zmq
from _procs import EARTHKEEP, Hosts, Process
from posttroll.message import Message

from earthkeep.nightlights.tables import METRIC_COLUMNS
from earthkeep.store.obstore import ObstoreStore
from earthkeep.testbed.emulators import Options, start
from earthkeep.testbed.runner import serve_app
from earthkeep.testbed.servers import free_port

pytestmark = [pytest.mark.pg, pytest.mark.s3, pytest.mark.nats, pytest.mark.redis]

OBS = int(os.environ.get("EARTHKEEP_CLUSTER_OBS", "20000"))
SEED = int(os.environ.get("EARTHKEEP_CLUSTER_SEED", "17"))
NETNS = os.environ.get("EARTHKEEP_CLUSTER_NETNS", "1") != "0"
KILLS = os.environ.get("EARTHKEEP_CLUSTER_KILLS", "1") != "0"  # 0: the same run without kills (a baseline)
STATIONS = [f"CL-{i:02d}" for i in range(20)]
BATCH = 1000
FILE_SUBJECT = "/AVO/viirs/sdr"
STATUS_SUBJECT = "/AVO/viirs/tasks/status"
MONTHS = ("2024-01", "2024-03")


def _box(name: str, west: float, south: float) -> dict[str, Any]:  # inside the LAADS emulator's tile h21v09
    ring = [[west, south], [west + 0.4, south], [west + 0.4, south + 0.3], [west, south + 0.3], [west, south]]
    return {"type": "Feature", "properties": {"name": name}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


AREAS = [_box("Nairobi", 36.6, -1.45), _box("Kisumu", 34.6, -0.2), _box("Mombasa", 39.5, -4.1)]
REPORT: dict[str, Any] = {}


# ------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    h = Hosts.create(want_netns=NETNS)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def emulators(tmp_path_factory, hosts: Hosts) -> Iterator[dict[str, str]]:
    """The emulators served on the hub address (reachable from every namespace); their settings."""
    root = tmp_path_factory.mktemp("testbed")
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        for name in ("gfs", "gina", "laads", "ckan"):
            running = start(name, Options(root=root / name, datasets=6, granule_every_s=1e6))
            env |= running.environment(stack.enter_context(serve_app(running.app, host=hosts.hub)))
            if name == "gina":  # the files of the mirrored facility (VIIRS_FACILITY, gilmore by default)
                env["_GINA_GRANULES"] = str(sum(g.facility == "gilmore" for g in running.state.granules))
        yield env


def _rehost(url: str, host: str, port: int | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    hostport = f"{host}:{port or parts.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{hostport}" if len(netloc) == 2 else hostport))


def _common_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "DATABASE_URL", "EARTHKEEP_", "NATS_",
                                                                    "REDIS_"))}
    env.update({
        "EARTHKEEP_ALLOW_PRIVATE_URLS": "true", "EARTHKEEP_LEASE_SECONDS": "2", "EARTHKEEP_POLL_SECONDS": "0.2",
        "EARTHKEEP_BACKOFF_SECONDS": "0.2", "EARTHKEEP_RETRIES": "2", "EARTHKEEP_LOG_FORMAT": "json",
        "HISTORICAL_DAYS": "0", "FORECAST_HOURS": "9", "FORCING_COLLECT_ON_START": "false",
        "GINA_BACKFILL_DAYS": "1", "EARTHKEEP_RESCUE_LEASE_SECONDS": "5", "EARTHKEEP_RESCUE_REPLICATION": "2",
        "EARTHKEEP_TASK_STATUS_INTERVAL": "0.5", "EARTHKEEP_STORE_DIR": str(root / "store"),
    })
    return env


@dataclass
class Cluster:
    """The servers as each side sees them, the processes, the keys."""

    root: Path
    hosts: Hosts
    env: dict[str, str]          # for role processes (servers on the hub address)
    local_env: dict[str, str]    # for CLI calls from the test's host (servers on 127.0.0.1)
    db_url: str
    keys: dict[str, str] = field(default_factory=dict)
    procs: dict[str, Process] = field(default_factory=dict)
    fronts: dict[str, str] = field(default_factory=dict)  # api name -> base URL the test and nodes use
    posttroll: str = ""

    def cli(self, *args: str) -> str:
        r = subprocess.run([*EARTHKEEP, *args], env=self.local_env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def start(self, name: str, args: list[str], **extra: str) -> Process:
        netns, _ = self.hosts.slots.get(name) or self.hosts.slot(name)
        env = {**self.env, "EARTHKEEP_PARTIAL_DIR": str(self.root / name / "partial"), "EARTHKEEP_SERVICE": name,
               **extra}
        (self.root / name).mkdir(exist_ok=True)
        self.procs[name] = Process(args, env, self.root / f"{name}.log", netns)
        return self.procs[name]

    def start_api(self, name: str) -> None:
        _, addr = self.hosts.slots.get(name) or self.hosts.slot(name)
        port = free_port()
        self.start(name, ["serve", "--role", "api"], EARTHKEEP_API_HOST=addr, EARTHKEEP_API_PORT=str(port))
        if addr == "127.0.0.1":
            self.fronts[name] = f"http://127.0.0.1:{port}"
        else:  # the test (a "load balancer") and the nodes reach the namespace through a loopback forward
            host, lport = self.hosts.forward(port, listen="127.0.0.1", target=addr)
            self.fronts[name] = f"http://{host}:{lport}"

    def wait_api(self, name: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self.procs[name]
            assert proc.alive(), proc.tail()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.fronts[name]}/health", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"{name} did not answer /health: {proc.tail()}"
            time.sleep(0.2)

    def restart(self, name: str) -> None:
        self.procs[name] = self.procs[name].restart()

    def http(self, api: str, scope: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.fronts[api], timeout=30,
                            headers={"Authorization": f"Bearer {self.keys[scope]}"})


@pytest.fixture
def cluster(tmp_path, hosts, emulators, pg_url, postgres_server, s3_server, s3_bucket, nats_server,
            redis_server) -> Iterator[Cluster]:
    env = _common_env(tmp_path) | {k: v for k, v in emulators.items() if not k.startswith("_")}
    local = dict(env) | {"DATABASE_URL": pg_url, "S3_ENDPOINT": s3_server.url, "S3_ACCESS_KEY": s3_server.access_key,
                         "S3_SECRET_KEY": s3_server.secret_key, "S3_REGION": s3_server.region, "S3_BUCKET": s3_bucket,
                         "NATS_URL": nats_server.url, "REDIS_URL": redis_server.url,
                         "EARTHKEEP_INGEST_BROKER": "nats", "EARTHKEEP_INGEST_API_CONSUMERS": "0",
                         "EARTHKEEP_INGEST_ACK_WAIT": "2"}
    remote = dict(local)
    for var in ("DATABASE_URL", "S3_ENDPOINT", "NATS_URL", "REDIS_URL"):
        port = urlsplit(local[var]).port
        assert port is not None, local[var]
        host, hub_port = hosts.forward(port)
        remote[var] = _rehost(local[var], host, hub_port)
    c = Cluster(tmp_path, hosts, remote, local, pg_url)
    c.cli("db", "upgrade")
    for scope in ("admin", "ingest", "node", "node2"):
        c.keys[scope] = c.cli("keys", "create", "--scope", scope.rstrip("2"), "--name", f"cluster-{scope}").split()[-1]
    try:
        yield c
    finally:
        for proc in c.procs.values():
            proc.stop()


# ------------------------------------------------------------------------------------------- workload

class Sender(threading.Thread):
    """Posts OBS observations in batches, alternating the API processes; a refused batch goes to the other."""

    def __init__(self, cluster: Cluster, apis: list[str]) -> None:
        super().__init__(daemon=True)
        self.cluster, self.apis, self.resent, self.error = cluster, apis, 0, ""
        t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
        self.batches = [[{"station_id": STATIONS[i % len(STATIONS)],
                          "timestamp": (t0 + timedelta(seconds=10 * (i // len(STATIONS)))).isoformat(),
                          "temperature": round(10 + (i % 97) * 0.1, 1)} for i in range(b, min(b + BATCH, OBS))]
                        for b in range(0, OBS, BATCH)]

    def run(self) -> None:
        clients = [self.cluster.http(a, "ingest") for a in self.apis]
        try:
            for n, batch in enumerate(self.batches):
                self._send(clients, n, batch)
        except Exception as exc:  # reported by the test
            self.error = repr(exc)
        finally:
            for c in clients:
                c.close()

    def _send(self, clients: list[httpx.Client], n: int, batch: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + 120
        for attempt in range(10_000):
            client = clients[(n + attempt) % len(clients)]
            try:
                accepted = client.post("/observations", json=batch).status_code == 202
            except httpx.TransportError:  # this API process was killed: the batch goes to the next one
                accepted = False
            if accepted:
                return
            self.resent += 1
            assert time.monotonic() < deadline, "no API process took a batch for 120 s"
            time.sleep(0.05)


def subscribe(address: str) -> tuple[zmq.Context, zmq.Socket]:
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    for topic in (f"pytroll:/{FILE_SUBJECT}", f"pytroll:/{STATUS_SUBJECT}"):
        sock.setsockopt_string(zmq.SUBSCRIBE, topic)
    sock.connect(address)
    return context, sock


class Subscriber(threading.Thread):
    """A posttroll subscriber (raw zmq SUB + ``Message.decode``, the README's) counting file messages."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.context, self.sock = subscribe(address)
        self.files: list[Message] = []
        self.joined = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.sock.poll(100):
                continue
            msg = Message.decode(self.sock.recv())
            if msg.subject == FILE_SUBJECT:
                self.files.append(msg)
            self.joined.set()

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.sock.close(linger=0)
        self.context.term()


def start_roles(c: Cluster) -> None:
    for name in ("api-a", "api-b"):
        c.start_api(name)
    _, addr = c.hosts.slot("granules")
    c.posttroll = f"tcp://{addr}:{free_port()}"
    c.start("granules", ["serve", "--role", "granules"], EARTHKEEP_POSTTROLL_ADDRESS=c.posttroll)
    c.start("scheduler", ["serve", "--role", "scheduler"])
    for i in (1, 2, 3):
        c.start(f"worker-{i}", ["serve", "--role", "worker"])
    c.start("consumer", ["weather", "consume", "--count", "2"])
    for name in ("api-a", "api-b"):
        c.wait_api(name)


def enqueue_work(c: Cluster) -> None:
    """Every domain's request, spread over both APIs."""
    with c.http("api-a") as a, c.http("api-b") as b:
        stations = [{"id": s, "name": s, "latitude": 1.0 + i, "longitude": 2.0} for i, s in enumerate(STATIONS)]
        assert a.post("/stations", json=stations).status_code == 201
        r = a.post("/jobs", json={"kind": "forcing.collect", "payload": {"history": False}})
        assert r.status_code == 202, r.text
        r = b.post("/jobs", json={"kind": "granules.mirror", "payload": {}})
        assert r.status_code == 202, r.text
        assert a.post("/update-ckan", json={"full": True}).status_code == 202
        nightlights_request(b)


def nightlights_request(client: httpx.Client) -> None:
    """The 3 areas and one nightlights job of 3 months for each."""
    area_ids = []
    for area in AREAS:
        r = client.post("/areas", json=area)
        assert r.status_code == 201, r.text
        area_ids.append(r.json()["id"])
    for area_id in area_ids:
        r = client.post("/nightlights/jobs", json={"area_id": area_id, "start_month": MONTHS[0],
                                                   "end_month": MONTHS[1]})
        assert r.status_code == 202, r.text


def kill_plan(rng: random.Random) -> list[tuple[float, str]]:
    """Seeded kill points (seconds after the workload started) of one worker, one API and the consumer."""
    return sorted([(rng.uniform(0.5, 2.5), "api-a"), (rng.uniform(1.0, 6.0), "worker-1"),
                   (rng.uniform(0.5, 4.0), "consumer")])


def run_kills(c: Cluster, plan: list[tuple[float, str]], t0: float) -> list[dict[str, Any]]:
    done = []
    for at, name in plan:
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        c.procs[name].kill9()
        running = query(c, "SELECT count(*) FROM jobs WHERE status = 'running'")[0][0]
        done.append({"process": name, "at_s": round(at, 2), "jobs_running": running})
        c.restart(name)
    for name in {n for _, n in plan if n.startswith("api")}:
        c.wait_api(name)
    return done


# --------------------------------------------------------------------------------------------- checks

_engines: dict[str, sa.Engine] = {}


def query(c: Cluster, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = _engines.get(c.db_url) or _engines.setdefault(c.db_url, sa.create_engine(c.db_url,
                                                                                      poolclass=sa.pool.NullPool))
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def wait_for(what: str, check, timeout: float = 150, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def settled(c: Cluster) -> list[tuple[Any, ...]] | None:
    jobs = query(c, "SELECT id, kind, status, error FROM jobs")
    return jobs if jobs and all(j[2] in ("completed", "failed", "cancelled") for j in jobs) else None


def run_nodes(c: Cluster) -> list[int]:
    """Two rescue nodes, one round each of every asset; a node that lost its API (exit 1) is run again."""
    codes = []
    for i, scope in enumerate(("node", "node2")):
        api = ("api-b", "api-a")[i]
        for _ in range(4):
            proc = Process(["rescue", "node", "--server", c.fronts[api], "--token", c.keys[scope],
                            "--dir", str(c.root / f"node-{i}"), "--name", f"node-{i}", "--once", "--batch", "200",
                            "--allow-private"], c.local_env, c.root / f"node-{i}.log")
            code = proc.proc.wait(120)
            proc.logf.close()
            codes.append(code)
            if code == 0:
                break
            time.sleep(1)
        assert code == 0, proc.tail()
    return codes


def check_catalog(c: Cluster) -> dict[str, int]:
    dup_items = query(c, "SELECT collection, item_id FROM items GROUP BY 1, 2 HAVING count(*) > 1")
    dup_assets = query(c, "SELECT store_key FROM assets GROUP BY 1 HAVING count(*) > 1")
    assert not dup_items and not dup_assets, (dup_items, dup_assets)
    env = c.local_env
    store = ObstoreStore.s3(env["S3_BUCKET"], env["S3_ENDPOINT"], env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"],
                            env["S3_REGION"], timeout_s=10)
    async def sizes() -> list[str]:
        bad = []
        for key, size in query(c, "SELECT store_key, size FROM assets"):
            info = await store.head(key)
            if size is not None and info.size != size:
                bad.append(key)
        return bad

    bad = asyncio.run(sizes())
    assert not bad, f"assets whose S3 object has another size: {bad}"
    by = dict(query(c, "SELECT collection, count(*) FROM items GROUP BY 1"))
    return {"items": sum(by.values()), "assets": len(query(c, "SELECT 1 FROM assets")), **{f"items:{k}": v
                                                                                          for k, v in by.items()}}


def check_observations(c: Cluster) -> dict[str, int]:
    def counts() -> tuple[int, int] | None:
        (n, distinct), = query(c, "SELECT count(*), count(DISTINCT (station_id, ts)) FROM ingest_observations")
        return (n, distinct) if n >= OBS else None

    n, distinct = wait_for("every observation stored", counts, timeout=120)
    time.sleep(3)  # redeliveries after the consumer's kill: none may add a row
    (n, distinct), = query(c, "SELECT count(*), count(DISTINCT (station_id, ts)) FROM ingest_observations")
    assert n == distinct == OBS, (n, distinct, OBS)
    hourly = wait_for("hourly rollups", lambda: (query(c, "SELECT coalesce(sum(n), 0) FROM ingest_hourly")[0][0]
                                                 == n) or None, timeout=30)
    assert hourly
    return {"observations": n}


def check_rescue(c: Cluster) -> dict[str, int]:
    target = 2
    over = query(c, """SELECT a.id FROM rescue_assets a WHERE
        (SELECT count(*) FROM rescue_allocations l WHERE l.asset_id = a.id AND l.status = 'active')
      + (SELECT count(*) FROM rescue_copies r WHERE r.asset_id = a.id AND r.state <> 'disagrees') > :t""", t=target)
    active = query(c, "SELECT count(*) FROM rescue_allocations WHERE status = 'active'")[0][0]
    dup = query(c, "SELECT asset_id, node_id FROM rescue_copies GROUP BY 1, 2 HAVING count(*) > 1")
    assert not over and not active and not dup, (over, active, dup)
    copies = query(c, "SELECT count(*) FROM rescue_copies")[0][0]
    assets = query(c, "SELECT count(*) FROM rescue_assets WHERE pool")[0][0]
    assert copies > 0 and assets > 0
    return {"rescue_assets": assets, "rescue_copies": copies}


def metrics(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


NL_SQL = ("SELECT a.name, r.month, " + ", ".join(f"r.{m}" for m in METRIC_COLUMNS) +
          " FROM nl_results r JOIN nl_areas a ON a.id = r.area_id")


def embedded_nightlights(root: Path, emulators: dict[str, str]) -> tuple[dict[tuple[str, str], tuple[Any, ...]],
                                                                         dict[str, int]]:
    """The same nightlights job on one embedded process (SQLite, local store): its metrics, items by collection."""
    root.mkdir()
    env = _common_env(root) | {k: v for k, v in emulators.items() if not k.startswith("_")}
    port = free_port()
    env |= {"DATABASE_URL": f"sqlite:///{root}/earthkeep.db", "EARTHKEEP_API_PORT": str(port),
            "EARTHKEEP_PARTIAL_DIR": str(root / "partial")}
    run = lambda *a: subprocess.run([*EARTHKEEP, *a], env=env, capture_output=True, text=True, timeout=120)  # noqa: E731
    assert run("db", "upgrade").returncode == 0
    key = run("keys", "create", "--scope", "admin", "--name", "ref").stdout.split()[-1]
    proc = Process(["serve", "--role", "api,worker"], env, root / "serve.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for("embedded serve", lambda: _health(base), timeout=90, every=0.2)
        with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
            nightlights_request(client)

        def done() -> list[tuple[Any, ...]] | None:
            with contextlib.closing(sqlite3.connect(root / "earthkeep.db", timeout=30)) as conn:
                jobs = conn.execute("SELECT status FROM jobs").fetchall()
                if jobs and all(s in ("completed", "failed", "cancelled") for (s,) in jobs):
                    items = conn.execute("SELECT collection, count(*) FROM items GROUP BY 1").fetchall()
                    return metrics(conn.execute(NL_SQL).fetchall()), dict(items)
            return None

        return wait_for("the embedded nightlights job", done, timeout=150)
    finally:
        proc.stop()


def _health(base: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    return False


# ----------------------------------------------------------------------------------------------- test

def test_cluster_of_every_role_under_kills_keeps_exact_results(cluster: Cluster, emulators, tmp_path,
                                                               record_property):
    c = cluster
    started = time.monotonic()
    reference, reference_items = embedded_nightlights(tmp_path / "embedded", emulators)
    record_property("cluster_mode", c.hosts.mode)
    REPORT.update(mode=c.hosts.mode, why_plain=c.hosts.why_plain, observations_posted=OBS, seed=SEED,
                  embedded_s=round(time.monotonic() - started, 1))
    print(f"\ncluster mode: {c.hosts.mode}" + (f" ({c.hosts.why_plain})" if c.hosts.why_plain else ""))
    start_roles(c)
    sub = Subscriber(c.posttroll)
    sub.start()
    try:
        wait_for("the posttroll subscriber joined", sub.joined.is_set, timeout=60, every=0.1)
        t0 = time.monotonic()
        REPORT["startup_s"] = round(t0 - started, 1)
        enqueue_work(c)
        sender = Sender(c, ["api-a", "api-b"])
        sender.start()
        REPORT["kills"] = run_kills(c, kill_plan(random.Random(SEED)) if KILLS else [], t0)
        sender.join(180)
        assert not sender.is_alive() and not sender.error, sender.error
        REPORT["obs_post_s"] = round(time.monotonic() - t0, 1)
        wait_for("the CKAN discovery", lambda: query(c, "SELECT count(*) FROM jobs WHERE kind = 'rescue.discover' "
                                                        "AND status = 'completed'")[0][0], timeout=120)
        REPORT["node_exit_codes"] = run_nodes(c)
        REPORT.update(check_observations(c))
        jobs = wait_for("every job settled", lambda: settled(c), timeout=150)
        stuck = [j for j in jobs if j[2] in ("pending", "running")]
        reasonless = [j for j in jobs if j[2] == "failed" and not (j[3] or "").strip()]
        assert not stuck and not reasonless, jobs
        REPORT.update({"jobs": len(jobs), "jobs_failed": sum(j[2] == "failed" for j in jobs)})
        sent = wait_for("the outbox drained", lambda: query(
            c, "SELECT count(*) FROM granule_messages WHERE subject = :s AND sent_at IS NULL", s=FILE_SUBJECT
        )[0][0] == 0 or None, timeout=60)
        assert sent
        files = query(c, "SELECT count(*) FROM granule_messages WHERE subject = :s", s=FILE_SUBJECT)[0][0]
        wait_for("every file message received", lambda: len(sub.files) >= files or None, timeout=30, every=0.2)
    finally:
        sub.close()
    REPORT["work_s"] = round(time.monotonic() - t0, 1)
    REPORT.update(check_catalog(c) | check_rescue(c))
    uids = [m.data.get("uid") for m in sub.files]
    assert len(sub.files) == files and len(set(uids)) == len(uids), (len(sub.files), files)
    granules = REPORT.get("items:viirs-sdr", 0)
    assert files == granules, (files, granules)
    REPORT.update({"granule_messages": len(sub.files), "gina_granules": int(emulators["_GINA_GRANULES"])})
    forcing = query(c, "SELECT count(*), count(DISTINCT (forecast_date, forecast_cycle, valid_time_start, data_type)) "
                       "FROM aggregator_datasets")[0]
    assert forcing[0] == forcing[1] == 4, forcing  # FORECAST_HOURS=9 every 3 h: f000, f003, f006, f009
    got = metrics(query(c, NL_SQL))
    assert len(got) == len(AREAS) * 3 and got == reference, (got, reference)
    for collection, n in reference_items.items():  # the nightlights inputs and composites: none lost, none twice
        assert REPORT.get(f"items:{collection}") == n, (collection, n, REPORT)
    REPORT["nightlights_results"] = len(got)
    record_property("cluster_report", REPORT)
    REPORT["wall_s"] = round(time.monotonic() - started, 1)
    print(f"cluster report: {REPORT}")
    assert granules == REPORT["gina_granules"], f"granules lost after a kill: {granules} of {REPORT['gina_granules']}"
