"""Soak: steady ingest + queries + a collection loop against one `earthkeep serve`, for minutes to hours.

What runs (all on 127.0.0.1, embedded defaults: SQLite catalog, local store):

* ``earthkeep testbed serve gfs`` (the live GFS archive, 1.0 deg grid) in its own process;
* ``earthkeep serve --role api,scheduler,worker`` in its own process, with a GFS collection every
  ``--collect-every`` minutes (``COLLECTION_SCHEDULE``) and a day of history;
* the server's station generator at ``--rate`` observations/s (``POST /generator/start``), which
  goes through the HTTP collector's validation and write-through path;
* this process: a query loop (``/weather/timeseries`` of a station for the last hour, ``/items``) as
  fast as one client can, recording each latency.

Every ``--sample`` seconds it records the server's resident memory (RSS, with its children), the
ingest lag (observations the generator had accepted minus rows in ``ingest_observations``) and the
p95 query latency of the interval; at the end it prints the table, the RSS growth after warm-up,
the lag trend, and writes a PNG with the three series (``--png``).

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 500] [--stations 50] [--sample 15]
        [--collect-every 5] [--dedupe-size N] [--png docs/img/soak.png]

The collector's in-memory dedupe cache (``EARTHKEEP_INGEST_DEDUPE_SIZE`` keys, one hour at most) grows
until it is full — at 500 obs/s the default 500,000 keys take about 17 minutes — and RSS with it; the
growth that matters is after that (``--warmup``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from earthkeep.testbed.servers import free_port

CLI = [sys.executable, "-m", "earthkeep.cli.main"]


@dataclass
class Sample:
    minute: float
    rss_mb: float
    lag: int
    p95_ms: float
    queries: int
    stored: int
    items: int


@dataclass
class Queries:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> list[float]:
        with self.lock:
            out, self.latencies = self.latencies, []
        return out


def wait_env_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the GFS emulator did not start")
        time.sleep(0.1)
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0]
    return env


@contextlib.contextmanager
def processes(root: Path, args: argparse.Namespace) -> Iterator[tuple[str, dict[str, str], psutil.Process]]:
    env_file = root / "gfs.env"
    gfs = subprocess.Popen([*CLI, "testbed", "serve", "gfs", "--port", "0", "--dir", str(root / "gfs"),
                            "--env-file", str(env_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    env = {**os.environ, **wait_env_file(env_file, gfs),
           "DATABASE_URL": f"sqlite:///{root}/catalog.db", "EARTHKEEP_STORE_DIR": str(root / "store"),
           "EARTHKEEP_PARTIAL_DIR": str(root / "partial"), "EARTHKEEP_API_PORT": str(port),
           "HISTORICAL_DAYS": "1", "COLLECTION_SCHEDULE": f"*/{args.collect_every} * * * *",
           "FORCING_COLLECT_ON_START": "true", "EARTHKEEP_LOG_FORMAT": "json", "LOG_LEVEL": "WARNING",
           **({"EARTHKEEP_INGEST_DEDUPE_SIZE": str(args.dedupe_size)} if args.dedupe_size else {}),
           **({"MALLOC_ARENA_MAX": str(args.malloc_arena_max)} if args.malloc_arena_max else {}),
           **({"EARTHKEEP_DB_POOL_SIZE": str(args.pool_size)} if args.pool_size else {})}
    subprocess.run([*CLI, "db", "upgrade"], env=env, check=True, capture_output=True)
    key = subprocess.run([*CLI, "keys", "create", "--scope", "ingest", "--name", "soak"], env=env, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    launcher = ([sys.executable, str(Path(__file__).with_name("_traced.py")), str(args.tracemalloc)]
                if args.tracemalloc else CLI)
    serve = subprocess.Popen([*launcher, "serve", "--role", "api,scheduler,worker"], env=env,
                             stdout=subprocess.DEVNULL, stderr=(root / "serve.log").open("wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("earthkeep serve did not become ready")
        yield base, {"Authorization": f"Bearer {key}"}, psutil.Process(serve.pid)
    finally:
        for p in (serve, gfs):
            p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)


def rss_mb(proc: psutil.Process) -> float:
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total / 2**20


def query_loop(base: str, station: str, stop: threading.Event, out: Queries) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        while not stop.is_set():
            now = datetime.now(UTC)
            params = {"start": (now - timedelta(hours=1)).isoformat(), "end": now.isoformat(), "interval": "5m"}
            for path, q in ((f"/weather/timeseries/{station}", params), ("/items", {"limit": 100})):
                t0 = time.perf_counter()
                try:
                    ok = c.get(path, params=q).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with out.lock:
                    if ok:
                        out.latencies.append(time.perf_counter() - t0)
                    else:
                        out.errors += 1


def counts(db: Path) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        obs = conn.execute("SELECT count(*) FROM ingest_observations").fetchone()[0]
        items = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    return int(obs), int(items)


def run(args: argparse.Namespace) -> list[Sample]:
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="earthkeep-soak-") as tmp, processes(Path(tmp), args) as (base, auth,
                                                                                                       proc):
        start = httpx.post(f"{base}/generator/start", headers=auth, timeout=30,
                           json={"stations": args.stations, "rate": args.rate, "invalid_rate": 0.0,
                                 "duplicate_rate": 0.01, "late_rate": 0.0}).json()
        station = "SIM0000"
        stop, queries = threading.Event(), Queries()
        threading.Thread(target=query_loop, args=(base, station, stop, queries), daemon=True).start()
        t0 = time.monotonic()
        print(f"soak: {args.minutes} min, {args.rate:g} obs/s, generator {start.get('running')}", flush=True)
        print(f"{'min':>6} {'RSS MB':>8} {'lag':>8} {'p95 ms':>8} {'queries':>8} {'stored':>10} {'items':>6}")
        try:
            while time.monotonic() - t0 < args.minutes * 60:
                time.sleep(args.sample)
                gen = httpx.get(f"{base}/generator/status", timeout=30).json()
                stored, items = counts(Path(tmp) / "catalog.db")
                lat = queries.take()
                p95 = statistics.quantiles(lat, n=20)[-1] * 1000 if len(lat) >= 20 else float("nan")
                s = Sample((time.monotonic() - t0) / 60, rss_mb(proc), int(gen.get("accepted", 0)) - stored, p95,
                           len(lat), stored, items)
                samples.append(s)
                if args.tracemalloc and s.minute >= args.warmup:
                    os.kill(proc.pid, signal.SIGUSR1)  # bench/_traced.py writes a heap snapshot
                print(f"{s.minute:6.1f} {s.rss_mb:8.1f} {s.lag:8d} {s.p95_ms:8.1f} {s.queries:8d} {s.stored:10d} "
                      f"{s.items:6d}", flush=True)
        finally:
            stop.set()
            httpx.post(f"{base}/generator/stop", headers=auth, timeout=30)
        print(f"query errors: {queries.errors}")
    return samples


def _mean_p95(samples: list[Sample]) -> float:
    """Mean of the intervals' p95, leaving out intervals with too few queries for one (NaN)."""
    values = [s.p95_ms for s in samples if s.p95_ms == s.p95_ms]
    return statistics.fmean(values) if values else float("nan")


def summarise(samples: list[Sample], warmup_min: float) -> dict[str, float]:
    steady = [s for s in samples if s.minute >= warmup_min] or samples
    first, last = steady[0], steady[-1]
    half = len(steady) // 2 or 1
    return {
        "rss_first_mb": first.rss_mb, "rss_last_mb": last.rss_mb,
        "rss_growth_pct": 100 * (last.rss_mb - first.rss_mb) / first.rss_mb,
        "lag_first_half_mean": statistics.fmean(s.lag for s in steady[:half]),
        "lag_second_half_mean": statistics.fmean(s.lag for s in steady[half:] or steady),
        "p95_first_half_ms": _mean_p95(steady[:half]),
        "p95_second_half_ms": _mean_p95(steady[half:] or steady),
        "observations_stored": float(last.stored),
    }


def heap_growth(folder: Path, top: int = 15) -> None:
    """Python-heap growth between the first and the last snapshot after warm-up, by allocation site."""
    import tracemalloc

    snaps = sorted(folder.glob("snap-*.pickle"))
    if len(snaps) < 2:
        print("tracemalloc: fewer than two snapshots after warm-up")
        return
    first, last = (tracemalloc.Snapshot.load(str(s)) for s in (snaps[0], snaps[-1]))
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    first, last = first.filter_traces(ignore), last.filter_traces(ignore)
    total = sum(st.size for st in last.statistics("filename")) - sum(st.size for st in first.statistics("filename"))
    print(f"tracemalloc: Python heap grew {total / 2**20:+.1f} MB between {snaps[0].name} and {snaps[-1].name}")
    for st in last.compare_to(first, "traceback")[:top]:
        frames = [f"{fr.filename.rsplit('site-packages/', 1)[-1].rsplit('/src/', 1)[-1]}:{fr.lineno}"
                  for fr in st.traceback[-4:]]
        print(f"  {st.size_diff / 2**20:+8.2f} MB {st.count_diff:+8d} blocks  {' <- '.join(reversed(frames))}")


def plot(samples: list[Sample], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    minutes = [s.minute for s in samples]
    for ax, values, label in ((axes[0], [s.rss_mb for s in samples], "server RSS (MB)"),
                              (axes[1], [s.lag for s in samples], "ingest lag (records)"),
                              (axes[2], [s.p95_ms for s in samples], "query p95 (ms)")):
        ax.plot(minutes, values, marker=".")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(bottom=0)
    axes[-1].set_xlabel("minutes")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--stations", type=int, default=50)
    ap.add_argument("--sample", type=float, default=15)
    ap.add_argument("--collect-every", type=int, default=5, help="minutes between GFS collections")
    ap.add_argument("--warmup", type=float, default=1.0, help="minutes left out of the growth figures")
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument("--dedupe-size", type=int, default=0,
                    help="EARTHKEEP_INGEST_DEDUPE_SIZE for the server (default: its own, 500,000 keys)")
    ap.add_argument("--malloc-arena-max", type=int, default=0, help="MALLOC_ARENA_MAX for the server (glibc)")
    ap.add_argument("--pool-size", type=int, default=0, help="EARTHKEEP_DB_POOL_SIZE for the server")
    ap.add_argument("--tracemalloc", type=Path, default=None,
                    help="run the server under tracemalloc (slower) and write heap snapshots to this folder; "
                         "prints the allocation sites that grew after warm-up")
    args = ap.parse_args()
    samples = run(args)
    if args.tracemalloc:
        heap_growth(args.tracemalloc)
    summary = summarise(samples, args.warmup)
    print(json.dumps({k: round(v, 2) for k, v in summary.items()}, indent=2))
    print(f"load average: {os.getloadavg()}")
    if args.png:
        plot(samples, args.png, f"earthkeep soak: {args.rate:g} obs/s + queries + GFS every {args.collect_every} min")
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
