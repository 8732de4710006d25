"""One full GFS cycle (41 files, u10 + v10 by byte ranges) from the emulated tree: earthkeep vs Herbie.

    .venv/bin/python bench/gfs.py [--rounds 2] [--hours 120] [--grid 0p25]
        [--network loopback,shaped] [--rtt-ms 40] [--mbit 200]

Writes one cycle of the testbed GFS tree (real GRIB2 on the 0.25° grid, 39
messages a file, ``ccsds`` packing, NOAA ``.idx``) into a temporary directory,
serves it with the testbed file server in its own process (so it does not share
the benchmark's GIL), and collects the 10 m wind of every forecast hour
0..120 every 3 h with:

* ``earthkeep``: :func:`earthkeep.forcing.collect.collect_wind` (finds the latest
  complete cycle by reading every ``.idx`` and keeps them for the plans, fetches
  the two adjacent messages of each file as one merged byte range through the
  transfer engine, decodes every value of every file with eccodes, hands it to
  a local store, catalogues it in SQLite with its ``aggregator_datasets`` row;
  8 files at once);
* ``herbie``: ``FastHerbie`` (herbie-data) pointed at the same server (a
  ``gfs`` model subclass whose only source is the emulator), then
  ``download(":[UV]GRD:10 m above ground:")`` with its default threads.

``--network`` runs both over plain loopback and/or through
:func:`earthkeep.testbed.shaper.shaper_process` (its own process): every
connection gets ``--mbit`` Mbit/s and ``--rtt-ms`` of round trip, as from a
bucket in another region. Both go through the same shaper.

Rounds alternate (Herbie first). Bytes and requests are counted by the server
(the fault injector's counters, reset between runs); bytes are compared with the
exact sum of the wanted messages computed from the inventories on disk. Prints
wall times (best of the rounds), the CPU time the benchmark process used in
that run (all threads; the server's own CPU is not included), the ratio
earthkeep/Herbie and the bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

PATTERNS = [":UGRD:10 m above ground:", ":VGRD:10 m above ground:"]
CYCLE = datetime(2024, 1, 1, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def counters(base: str, reset: bool = False) -> dict:
    request = urllib.request.Request(f"{base}/_faults", method="DELETE" if reset else "GET")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def write_cycle(root: Path, hours: list[int], grid: str) -> int:
    """Write the cycle; return the exact bytes of the wanted messages."""
    from earthkeep.testbed import gfs
    from earthkeep.transfer.idx import expected_bytes, parse_idx, select

    total = 0
    for hour in hours:
        path = gfs.add_hour(root, CYCLE, hour, grid=grid, packing="ccsds")
        entries = parse_idx(gfs.idx_path(root, CYCLE, hour, grid).read_text())
        total += expected_bytes(entries, select(entries, PATTERNS), path.stat().st_size)
    return total


FILES_AT_ONCE = 8


def run_earthkeep(base: str, work: Path, hours: int, grid: str) -> tuple[float, int]:
    from earthkeep.config import Settings
    from earthkeep.forcing.collect import collect_wind
    from earthkeep.forcing.settings import ForcingSourcesSettings, forcing_config
    from earthkeep.runtime import Services
    from earthkeep.settings import load_settings
    from earthkeep.store.obstore import ObstoreStore

    loaded = load_settings(
        catalog={"database_url": f"sqlite:///{work}/catalog.db"},
        transfer={"work_dir": work / "partial"},
        forcing={"forecast_hours": hours, "forecast_interval_hours": 3},
    )
    sources = ForcingSourcesSettings(gfs_mirrors=["aws"], gfs_aws_url=base, gfs_grid=grid,
                                     gfs_concurrency=FILES_AT_ONCE)
    services = Services.open(
        Settings({**loaded.sections(), "forcing_sources": sources}, None), store=ObstoreStore.local(work / "store")
    )
    now = CYCLE.replace(tzinfo=UTC) + timedelta(hours=5)
    started = time.perf_counter()
    report = asyncio.run(collect_wind(services, forcing_config(services.settings), now=now, history=False))
    elapsed = time.perf_counter() - started
    services.close()
    if report.status != "completed":
        raise RuntimeError(f"earthkeep run failed: {report.error}")
    return elapsed, report.records


def run_herbie(base: str, work: Path, hours: int, grid: str) -> tuple[float, int]:
    os.environ["HERBIE_CONFIG_PATH"] = str(work / "herbie-config")
    os.environ["HERBIE_SAVE_DIR"] = str(work / "herbie-data")
    import herbie.models
    from herbie import FastHerbie

    class gfs_emulator(herbie.models.gfs):
        def template(self) -> None:
            herbie.models.gfs.template(self)  # Herbie calls it with a Herbie object, not an instance
            post_root = self.SOURCES["aws"].split(".amazonaws.com/", 1)[1]
            self.SOURCES = {"emulator": f"{base}/{post_root}"}  # "local" is Herbie's name for files on disk

    herbie.models.gfs_emulator = gfs_emulator
    started = time.perf_counter()
    fh = FastHerbie(
        [CYCLE],
        model="gfs_emulator",
        product=f"pgrb2.{grid}",
        fxx=list(range(0, hours + 1, 3)),
        priority=["emulator"],
        save_dir=work / "herbie-data",
        verbose=False,
    )
    files = fh.download(":[UV]GRD:10 m above ground:")
    elapsed = time.perf_counter() - started
    if len(files) != len(fh.objects):
        raise RuntimeError(f"Herbie fetched {len(files)} of {len(fh.objects)} files")
    return elapsed, len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hours", type=int, default=120)
    parser.add_argument("--grid", default="0p25")
    parser.add_argument("--network", default="loopback,shaped", help="loopback, shaped or both (comma-separated)")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="shaped: round trip of every connection")
    parser.add_argument("--mbit", type=float, default=200.0, help="shaped: Mbit/s of every connection")
    parser.add_argument("--files-at-once", type=int, default=FILES_AT_ONCE, help="earthkeep: gfs_concurrency")
    args = parser.parse_args()
    globals()["FILES_AT_ONCE"] = args.files_at_once
    logging.disable(logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    from earthkeep.testbed.runner import file_server_process
    from earthkeep.testbed.shaper import Shaping, shaper_process

    hours = list(range(0, args.hours + 1, 3))
    shaping = Shaping(rtt_ms=args.rtt_ms, mbit_per_conn=args.mbit)
    networks = [n for n in ("loopback", "shaped") if n in args.network.split(",")]
    tables = {}
    with tempfile.TemporaryDirectory(prefix="bench-gfs-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        wanted = write_cycle(tmp / "tree", hours, args.grid)
        print(
            f"wrote {len(hours)} files ({args.grid}, ccsds) in {time.perf_counter() - t0:.1f} s; "
            f"wanted messages: {wanted} bytes ({wanted / 2**20:.1f} MiB)"
        )
        with file_server_process(tmp / "tree") as origin:
            for network in networks:
                label = "loopback" if network == "loopback" else f"shaped ({shaping.describe()})"
                with contextlib.ExitStack() as stack:
                    base = origin if network == "loopback" else stack.enter_context(shaper_process(origin, shaping))
                    tables[label] = rounds(origin, base, tmp / network, args)
    for label, results in tables.items():
        report(results, wanted, label)


def rounds(origin: str, base: str, work: Path, args: argparse.Namespace) -> dict[str, list[tuple]]:
    """Alternate Herbie and earthkeep ``args.rounds`` times against ``base``; counters are read at ``origin``."""
    results: dict[str, list[tuple]] = {"herbie": [], "earthkeep": []}
    for r in range(args.rounds):
        for name, fn in (("herbie", run_herbie), ("earthkeep", run_earthkeep)):
            counters(origin, reset=True)
            cpu = time.process_time()
            elapsed, files = fn(base, work / f"{name}-{r}", args.hours, args.grid)
            cpu = time.process_time() - cpu
            seen = counters(origin)
            sent, requests = seen["body_bytes"], seen["requests"]
            results[name].append((elapsed, files, sent, cpu, requests))
            print(
                f"{work.name} round {r + 1} {name:9s} {elapsed:6.2f} s  CPU {cpu:5.2f} s  {files} files  "
                f"{requests} requests  {sent} bytes from the server"
            )
    return results


def report(results: dict[str, list[tuple]], wanted: int, network: str) -> None:
    best = {name: min(runs) for name, runs in results.items()}
    print(f"\n{network}:")
    print("| | wall time (best) | CPU in that run | files | requests | bytes sent by the server | vs wanted messages |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (elapsed, files, sent, cpu, requests) in best.items():
        print(
            f"| {name} | {elapsed:.2f} s | {cpu:.2f} s | {files} | {requests} | {sent} | "
            f"{100 * (sent - wanted) / wanted:+.2f} % |"
        )
    ratio = best["earthkeep"][0] / best["herbie"][0]
    print(f"\nearthkeep / Herbie wall time ({network}): {ratio:.2f}x (goal <= 0.5x)")


if __name__ == "__main__":
    main()
