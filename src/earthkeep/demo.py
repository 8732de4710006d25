"""``earthkeep demo``: every domain working offline, against the testbed emulators, in one command.

What it does, in order (all on 127.0.0.1, nothing leaves the machine):

1. starts the GFS, GINA, LAADS and CKAN emulators (:mod:`earthkeep.testbed.emulators`)
   in this process;
2. writes a fresh embedded catalog and store under ``DIR`` and two API keys
   (admin and node), kept in ``DIR/keys.env``;
3. starts ``earthkeep serve --role api,scheduler,worker,granules`` as a child
   process whose environment points at the emulators (``DIR/demo.env`` holds it,
   to reuse with any other command);
4. fills every domain through the public API: a GFS collection (1.0 deg grid, the
   latest cycle and ``HISTORICAL_DAYS=1`` of history), a GINA mirror with its
   posttroll messages, simulated stations for ``--stations-seconds``, a CKAN
   discovery and one rescue-node round, and a nightlights request for two months
   of one area;
5. prints what each domain holds (read back from the catalog) and keeps serving
   until Ctrl-C, or exits with ``--exit`` (0 when every domain holds data, else 1).

Copernicus Marine currents are not part of it: the copernicusmarine client talks
to Copernicus' own services, which the testbed reaches only in-process.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog

from earthkeep.testbed.emulators import Options, start
from earthkeep.testbed.runner import serve_app
from earthkeep.testbed.servers import free_port

log = structlog.get_logger(__name__)

EMULATED = ("gfs", "gina", "laads", "ckan")
AREA = {"type": "Feature", "properties": {"name": "Nairobi"},  # inside the LAADS emulator's tile h21v09
        "geometry": {"type": "Polygon",
                     "coordinates": [[[36.6, -1.45], [37.1, -1.45], [37.1, -1.1], [36.6, -1.1], [36.6, -1.45]]]}}
MONTHS = ("2024-01", "2024-02")
WORK_KINDS = ("forcing.collect", "granules.mirror", "rescue.discover", "laads_download", "etl_processing")


@dataclass
class Demo:
    """Where the demo lives and how it reports."""

    root: Path
    port: int = 8000
    stations_seconds: float = 20.0
    timeout_s: float = 900.0
    say: Callable[[str], None] = print
    env: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self, emulators: dict[str, str]) -> dict[str, str]:
        """The service's settings: the emulators, the catalog and store under ``root``, small batches."""
        data = self.root / "data"
        return {
            **emulators,
            "DATABASE_URL": f"sqlite:///{data}/earthkeep.db",
            "EARTHKEEP_STORE_DIR": str(data / "store"),
            "EARTHKEEP_PARTIAL_DIR": str(data / "partial"),
            "EARTHKEEP_API_PORT": str(self.port),
            "EARTHKEEP_POSTTROLL_ADDRESS": f"tcp://127.0.0.1:{free_port()}",
            "HISTORICAL_DAYS": "1",
            "FORCING_COLLECT_ON_START": "false",  # the demo asks for the collection itself
            "EARTHKEEP_GINA_SCHEDULE": "*/2 * * * *",
            "GINA_BACKFILL_DAYS": "1",
            "EARTHKEEP_ALLOW_PRIVATE_URLS": "true",
        }


def _admin_command(env: dict[str, str], *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "earthkeep.cli.main", *args], env={**os.environ, **env},
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"earthkeep {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


@contextlib.contextmanager
def emulators(root: Path) -> Iterator[dict[str, str]]:
    """The four provider emulators on free loopback ports; yields the settings that point at them."""
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        for name in EMULATED:
            running = start(name, Options(root=root / "testbed", datasets=60))
            env |= running.environment(stack.enter_context(serve_app(running.app)))
        yield env


@contextlib.contextmanager
def service(demo: Demo) -> Iterator[subprocess.Popen[bytes]]:
    """``earthkeep serve`` with every role, its logs in ``root/serve.log``; stopped on exit."""
    logfile = (demo.root / "serve.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "earthkeep.cli.main", "serve",
                             "--role", "api,scheduler,worker,granules"],
                            env={**os.environ, **demo.env, "EARTHKEEP_LOG_FORMAT": "json"},
                            stdout=logfile, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{demo.api}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"earthkeep serve did not become ready: see {demo.root / 'serve.log'}")
            time.sleep(0.25)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logfile.close()


def prepare(demo: Demo, emulator_env: dict[str, str]) -> None:
    """Fresh catalog, keys and ``demo.env`` under ``root``."""
    demo.root.mkdir(parents=True, exist_ok=True)
    demo.env = demo.environment(emulator_env)
    _admin_command(demo.env, "db", "upgrade")
    for scope in ("admin", "node"):
        out = _admin_command(demo.env, "keys", "create", "--scope", scope, "--name", f"demo-{scope}")
        demo.keys[scope] = out.strip().splitlines()[-1]
    lines = [f"export {k}={json.dumps(v)}" for k, v in demo.env.items()]
    (demo.root / "demo.env").write_text("\n".join(lines) + "\n")
    (demo.root / "keys.env").write_text(f"export KEY={demo.keys['admin']}\nexport NODE_KEY={demo.keys['node']}\n")
    (demo.root / "keys.env").chmod(0o600)


def fill(demo: Demo) -> None:
    """Ask the running service for work in every domain (returns once it is queued)."""
    auth = {"Authorization": f"Bearer {demo.keys['admin']}"}
    with httpx.Client(base_url=demo.api, headers=auth, timeout=60) as c:
        for kind, payload in (("forcing.collect", {"history": True}), ("granules.mirror", {})):
            _ok(c.post("/jobs", json={"kind": kind, "payload": payload}))
        _ok(c.post("/update-ckan", json={"full": True}))
        _ok(c.post("/generator/start", json={"stations": 8, "rate": 200, "duration_s": demo.stations_seconds}))
        area = _ok(c.post("/areas", json=AREA))
        _ok(c.post("/nightlights/jobs", json={"area_id": area["id"], "start_month": MONTHS[0],
                                              "end_month": MONTHS[-1]}))


def _ok(r: httpx.Response) -> Any:
    if r.status_code >= 400:
        raise RuntimeError(f"{r.request.method} {r.request.url.path}: HTTP {r.status_code} {r.text[:300]}")
    return r.json()


def wait_for_work(demo: Demo, on_progress: Callable[[dict[str, int]], None] = lambda _: None) -> dict[str, int]:
    """Wait until no demo job is pending or running (and the rescue node has had its round)."""
    auth = {"Authorization": f"Bearer {demo.keys['admin']}"}
    deadline = time.monotonic() + demo.timeout_s
    node_ran = False
    with httpx.Client(base_url=demo.api, headers=auth, timeout=60) as c:
        while True:
            jobs = _ok(c.get("/jobs", params={"limit": 1000}))["jobs"]
            mine = [j for j in jobs if j["kind"] in WORK_KINDS]
            counts = {s: sum(1 for j in mine if j["status"] == s) for s in ("pending", "running", "completed",
                                                                          "failed")}
            on_progress(counts)
            discovered = any(j["kind"] == "rescue.discover" and j["status"] == "completed" for j in jobs)
            if discovered and not node_ran:
                rescue_round(demo)
                node_ran = True
            generator = _ok(c.get("/generator/status"))
            if not counts["pending"] and not counts["running"] and node_ran and not generator.get("running"):
                return counts
            if time.monotonic() > deadline:
                raise RuntimeError(f"the demo's jobs did not finish within {demo.timeout_s:.0f} s: {counts}")
            time.sleep(1.0)


def rescue_round(demo: Demo) -> None:
    """One allocation round of a rescue node (the CLI, as a volunteer runs it)."""
    _admin_command(demo.env, "rescue", "node", "--server", demo.api, "--token", demo.keys["node"],
                   "--dir", str(demo.root / "rescue-node"), "--once", "--batch", "40", "--allow-private")


def summary(demo: Demo) -> dict[str, dict[str, int]]:
    """What each domain holds, read from the catalog."""
    from sqlalchemy import create_engine, text

    engine = create_engine(demo.env["DATABASE_URL"])
    queries = {
        "forcing": {"GFS wind files": "SELECT count(*) FROM aggregator_datasets WHERE source = 'noaa_gfs'"},
        "stations": {"stations": "SELECT count(*) FROM ingest_stations",
                     "observations": "SELECT count(*) FROM ingest_observations"},
        "granules": {"granules": "SELECT count(*) FROM items WHERE collection = 'viirs-sdr'",
                     "messages": "SELECT count(*) FROM granule_messages"},
        "rescue": {"datasets": "SELECT count(*) FROM rescue_datasets",
                   "assets rescued": "SELECT count(*) FROM rescue_allocations WHERE status = 'done'"},
        "nightlights": {"area-months": "SELECT count(*) FROM nl_results"},
    }
    out: dict[str, dict[str, int]] = {}
    try:
        with engine.connect() as conn:
            for domain, named in queries.items():
                out[domain] = {k: int(conn.execute(text(q)).scalar_one()) for k, q in named.items()}
    finally:
        engine.dispose()
    return out


def complete(found: dict[str, dict[str, int]]) -> list[str]:
    """The domains whose first figure is 0."""
    return [d for d, figures in found.items() if not next(iter(figures.values()))]
