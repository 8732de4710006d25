"""Mirror a day of VIIRS granules from the GINA emulator: earthkeep vs ``aria2c -x4 -s4``, in one run.

    .venv/bin/python bench/mirror.py [--total-mb 2048] [--file-mb 8] [--files-at-once 2] [--connections 4]
        [--network loopback,shaped] [--rtt-ms 40] [--mbit 200]

The emulator (``earthkeep.testbed.gina``) runs in a separate process on
loopback and serves generated HDF5 granules. Both contenders fetch the same
list with 4 connections per file and the same number of files at once:

* earthkeep: ``granules.mirror`` with ``NUM_GINA_CONNECTIONS=4`` (listing,
  transfer engine, md5 + size verification, h5py check, catalog, outbox) while a
  ``Collector`` publishes the file messages on ZMQ to a subscriber;
* aria2c: ``-x4 -s4 -j<files-at-once>`` over an input file with
  ``checksum=md5=...`` per URL (aria2c verifies md5 too).

``--network`` runs both over plain loopback and/or through
:func:`earthkeep.testbed.shaper.shaper_process` (its own process): every
connection gets ``--mbit`` Mbit/s and ``--rtt-ms`` of round trip; both go
through the same shaper (the listing, and so every file URL, points at it).

Printed: seconds, MiB/s, the ratio earthkeep/aria2c (goal >= 0.9), and the
latency from "file verified" to "message received by the subscriber" (p50, p95).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def serve(root: Path, slots: int, file_size: int, port_file: Path) -> None:
    """Child process: generate the granules, serve them, write the URL to ``port_file``."""
    from datetime import UTC, datetime, timedelta

    from earthkeep.testbed.gina import GinaNrt
    from earthkeep.testbed.runner import serve_app

    start = (datetime.now(UTC) - timedelta(hours=20)).replace(tzinfo=None, microsecond=0)
    emu = GinaNrt(root, start=start, platforms=("snpp",), facilities=("gilmore",), file_size=file_size,
                  segments=("GMTCO", "SVM15", "SVM16"))
    emu.add_granules(slots)
    with serve_app(emu.app()) as base:
        port_file.write_text(base)
        while True:
            time.sleep(3600)


def listing(base: str, backfill: int = 2) -> list[dict]:
    import httpx

    from earthkeep.sources.gina import Selection, search_params, search_url

    sel = Selection("gilmore", ("snpp",), ("GMTCO", "SVM15", "SVM16"), backfill)
    return httpx.get(search_url(base), params=search_params(sel, "snpp"), timeout=60).json()


def run_aria2c(entries: list[dict], out: Path, at_once: int, connections: int) -> float:
    inp = out / "input.txt"
    out.mkdir(parents=True, exist_ok=True)
    inp.write_text("".join(f"{e['url']}\n  checksum=md5={e['md5sum']}\n  out={Path(e['url']).name}\n"
                           for e in entries))
    cmd = ["aria2c", f"-x{connections}", f"-s{connections}", f"-j{at_once}", "-k1M",
           "--check-integrity=true", "--file-allocation=none",
           "--console-log-level=warn", "--summary-interval=0", "-d", str(out / "files"), "-i", str(inp)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


class Subscriber(threading.Thread):
    """The README's subscriber in a thread: uid -> time received."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt_string(zmq.SUBSCRIBE, "pytroll://AVO/viirs/sdr")
        self.sock.connect(address)
        self.received: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        from posttroll.message import Message

        while not self.stop.is_set():
            if self.sock.poll(100):
                msg = Message.decode(self.sock.recv())
                self.received[msg.data["uid"]] = time.perf_counter()
        self.sock.close(linger=0)
        self.ctx.term()


async def run_earthkeep(
    base: str, work: Path, at_once: int, connections: int
) -> tuple[float, int, dict[str, float], Subscriber]:
    from earthkeep.granules.config import GranuleConfig
    from earthkeep.granules.mirror import mirror
    from earthkeep.granules.service import Collector
    from earthkeep.granules.settings import ViirsSettings
    from earthkeep.runtime import Services
    from earthkeep.settings import load_settings
    from earthkeep.store.obstore import ObstoreStore
    from earthkeep.testbed.servers import free_port

    s = load_settings(catalog={"database_url": f"sqlite:///{work}/catalog.db"},
                      transfer={"work_dir": work / "partial"}, granules={"connections": connections})
    svc = Services.open(s, store=ObstoreStore.local(work / "store"))
    viirs = ViirsSettings(gina_url=base, platforms=["snpp"], segments=["GMTCO", "SVM15", "SVM16"],
                          file_concurrency=at_once, publish_address=f"tcp://127.0.0.1:{free_port()}",
                          status_interval_s=3600)
    cfg = GranuleConfig(s.granules, viirs, s.mail)
    verified: dict[str, float] = {}
    sub = Subscriber(viirs.publish_address)
    sub.start()
    try:
        async with Collector(svc, cfg, join_grace_s=0.5) as collector:
            await asyncio.sleep(1.0)
            hooks = collector.hooks(verified=lambda name: verified.__setitem__(name, time.perf_counter()))
            t0 = time.perf_counter()
            report = await mirror(svc, cfg, hooks=hooks)
            elapsed = time.perf_counter() - t0
            for _ in range(100):
                if len(sub.received) >= len(report.stored):
                    break
                await asyncio.sleep(0.1)
    finally:
        sub.stop.set()
        svc.close()
    return elapsed, report.bytes, verified, sub


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--total-mb", type=int, default=2048)
    ap.add_argument("--file-mb", type=float, default=8.0)
    ap.add_argument("--files-at-once", type=int, default=2)
    ap.add_argument("--connections", type=int, default=4, help="connections a file, for both")
    ap.add_argument("--network", default="loopback,shaped", help="loopback, shaped or both (comma-separated)")
    ap.add_argument("--rtt-ms", type=float, default=40.0, help="shaped: round trip of every connection")
    ap.add_argument("--mbit", type=float, default=200.0, help="shaped: Mbit/s of every connection")
    args = ap.parse_args()
    if shutil.which("aria2c") is None:
        sys.exit("aria2c is not installed (apt-get install aria2)")
    from earthkeep.testbed.shaper import Shaping, shaper_process

    shaping = Shaping(rtt_ms=args.rtt_ms, mbit_per_conn=args.mbit)
    networks = [n for n in ("loopback", "shaped") if n in args.network.split(",")]
    file_size = int(args.file_mb * (1 << 20))
    slots = max(1, args.total_mb // int(args.file_mb * 3))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as d:
        tmp = Path(d)
        port_file = tmp / "url"
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(tmp / "gina"), str(slots),
                                  str(file_size), str(port_file)])
        try:
            while not port_file.exists():
                if child.poll() is not None:
                    sys.exit("the emulator process stopped")
                time.sleep(0.2)
            origin = port_file.read_text()
            for network in networks:
                label = "loopback" if network == "loopback" else f"shaped ({shaping.describe()})"
                with contextlib.ExitStack() as stack:
                    base = origin if network == "loopback" else stack.enter_context(shaper_process(origin, shaping))
                    results.append((label, *one_network(base, tmp / network, args)))
        finally:
            child.terminate()
            child.wait(10)
    for result in results:
        report(*result)


def one_network(base: str, work: Path, args: argparse.Namespace) -> tuple[int, float, float, list[float], int]:
    entries = listing(base)
    total = sum(e["size"] for e in entries)
    print(f"{work.name}: {len(entries)} granules, {total / (1 << 20):.0f} MiB, {args.connections} connections per "
          f"file, {args.files_at_once} files at once", flush=True)
    ours, nbytes, verified, sub = asyncio.run(run_earthkeep(base, work / "ek", args.files_at_once, args.connections))
    assert nbytes == total, f"earthkeep stored {nbytes} of {total} bytes"
    theirs = run_aria2c(entries, work / "aria2c", args.files_at_once, args.connections)
    lat = [sub.received[n] - t for n, t in verified.items() if n in sub.received]
    return total, ours, theirs, lat, len(verified)


def report(network: str, total: int, ours: float, theirs: float, lat: list[float], verified: int) -> None:
    mib = total / (1 << 20)
    print(f"\n{network}:")
    print(f"earthkeep  {ours:7.2f} s  {mib / ours:7.1f} MiB/s  (md5 + size + HDF5 verified, catalogued, published)")
    print(f"aria2c     {theirs:7.2f} s  {mib / theirs:7.1f} MiB/s  (md5 verified)")
    print(f"ratio earthkeep/aria2c throughput: {theirs / ours:.2f}x (goal >= 1.0x shaped, >= 0.9x loopback)")
    print(f"messages received {len(lat)}/{verified}; latency verified -> received: "
          f"p50 {statistics.median(lat) * 1000:.1f} ms, p95 {pct(lat, 0.95) * 1000:.1f} ms, "
          f"max {max(lat) * 1000:.1f} ms")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
    else:
        main()
