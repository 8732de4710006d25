"""Transfer engine throughput against aria2c and a single httpx stream, on loopback and a shaped network.

    .venv/bin/python bench/transfer.py [--files 8] [--size-mib 256] [--segments 4] [--repeat 1]
        [--network loopback,shaped] [--rtt-ms 40] [--mbit 200]

Generates ``--files`` random files of ``--size-mib`` MiB in a temporary directory,
serves them with the testbed file server (uvicorn in its own process, so it does
not share the benchmark's GIL) on 127.0.0.1, and downloads all of them, one file
at a time, with:

* ``engine``: :class:`earthkeep.transfer.TransferEngine` with ``--segments``
  segments, each finished file moved into an output folder (what aria2c does);
* ``engine 1 seg``: the same with one segment (one request per file);
* ``engine>store``: the engine into a local ``ObstoreStore`` (the product path:
  the store copies the file and records its sha256, which the engine computes
  while downloading);
* ``engine>store+sha``: the same with the expected sha256 given and verified;
* ``aria2c``: ``aria2c -x4 -s4`` (one file at a time, ``-j1``);
* ``single``: a plain ``httpx`` stream per file written with ``file.write``.

``--network`` runs every tool over plain loopback and/or through
:func:`earthkeep.testbed.shaper.shaper_process` (its own process), which gives
every connection ``--mbit`` Mbit/s and ``--rtt-ms`` of round trip (a bucket in
another region); every tool goes through the same shaper, aria2c with as many
connections a file as the engine has segments (``-x/-s = --segments``).

Prints, for each network, MiB/s, CPU seconds and the seconds spent in ``put_file`` for each
(median over ``--repeat`` rounds) and the ratios to aria2c and to the single
stream. Needs ``aria2c`` (Debian package ``aria2``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import resource
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx
import structlog

from earthkeep.config import TransferSettings
from earthkeep.store.base import ObjectInfo
from earthkeep.store.obstore import ObstoreStore
from earthkeep.testbed.runner import file_server_process
from earthkeep.testbed.shaper import Shaping, shaper_process
from earthkeep.transfer import TransferEngine, TransferRequest

MIB = 1 << 20
T = TypeVar("T")


@dataclass
class Run:
    name: str
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    store_seconds: list[float] = field(default_factory=list)

    def rate(self, total_bytes: int) -> float:
        return total_bytes / statistics.median(self.seconds) / MIB


def make_files(root: Path, count: int, size: int) -> dict[str, str]:
    """Write ``count`` random files of ``size`` bytes; return name -> sha256."""
    digests = {}
    block = 16 * MIB
    for i in range(count):
        name = f"file{i:02d}.bin"
        h = hashlib.sha256()
        with open(root / name, "wb") as fh:
            left = size
            while left:
                chunk = os.urandom(min(block, left))
                h.update(chunk)
                fh.write(chunk)
                left -= len(chunk)
        digests[name] = h.hexdigest()
    return digests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])




class DirStore:
    """Bench-only hand-over: move the verified file into a folder, like a downloader's output.

    It records nothing: the smallest possible store, to measure the engine itself
    (which computes the sha256 every store of earthkeep records, as it downloads).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()

    async def put_file(
        self, key: str, path: Path, *, content_type: str | None = None, overwrite: bool = True,
        sha256: str | None = None, consume: bool = False,
    ) -> ObjectInfo:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        size = path.stat().st_size
        os.replace(path, target)
        return ObjectInfo(key=key, size=size)


class TimedStore:
    """Wraps a store and adds up the time spent in ``put_file`` (everything else is passed through)."""

    def __init__(self, inner: ObstoreStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.spent = 0.0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        content_type: str | None = None,
        overwrite: bool = True,
        sha256: str | None = None,
        consume: bool = False,
    ) -> ObjectInfo:
        start = time.perf_counter()
        try:
            return await self.inner.put_file(key, path, content_type=content_type, overwrite=overwrite, sha256=sha256,
                                             consume=consume)
        finally:
            self.spent += time.perf_counter() - start


def timed(run: Run, fn: Callable[[], T], children: bool = False) -> T:
    """Run ``fn``, recording its wall time and CPU time (of this process, or of its children)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    before = resource.getrusage(who)
    start = time.perf_counter()
    result = fn()
    run.seconds.append(time.perf_counter() - start)
    after = resource.getrusage(who)
    run.cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return result


def engine_round(base: str, names: dict[str, str], out: Path, kind: str, segments: int, verify: bool) -> float:
    """Fetch every file with the engine; return the seconds spent in ``put_file``."""
    settings = TransferSettings(work_dir=out / "work", segments=segments, per_host=max(8, segments), allow_private=True)
    if kind == "dir":
        store: DirStore | TimedStore = DirStore(out / "files")
    else:
        store = TimedStore(ObstoreStore.local(out / "store"))

    async def main() -> None:
        async with TransferEngine(store, settings) as engine:  # type: ignore[arg-type]
            for name, digest in names.items():
                req = TransferRequest(f"{base}/{name}", f"bench/{name}", sha256=digest if verify else None)
                await engine.fetch(req)

    asyncio.run(main())
    return store.spent if isinstance(store, TimedStore) else 0.0


def aria2_round(base: str, names: dict[str, str], out: Path, segments: int, verify: bool = False) -> None:
    listing = out / "urls.txt"
    option = "  checksum=sha-256={}\n"
    listing.write_text("".join(f"{base}/{n}\n" + (option.format(d) if verify else "") for n, d in names.items()))
    cmd = ["aria2c", f"-x{segments}", f"-s{segments}", "-j1", "-q", "--allow-overwrite=true",
           "-d", str(out / "aria"), "-i", str(listing)]
    subprocess.run(cmd, check=True)


def single_round(base: str, names: dict[str, str], out: Path) -> None:
    (out / "single").mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            for name in names:
                async with client.stream("GET", f"{base}/{name}") as response:
                    response.raise_for_status()
                    with open(out / "single" / name, "wb") as fh:
                        async for chunk in response.aiter_raw():
                            fh.write(chunk)

    asyncio.run(main())


def check_outputs(folder: Path, names: dict[str, str], size: int) -> None:
    for name in names:
        found = list(folder.rglob(name))
        if len(found) != 1 or found[0].stat().st_size != size:
            raise SystemExit(f"bad download of {name} in {folder}: {found}")


ENGINE_RUNS = {
    "engine": ("dir", None, False),
    "engine 1 seg": ("dir", 1, False),
    "engine>store": ("store", None, False),
    "engine>store+sha": ("store", None, True),
}


ALL_TOOLS = (*ENGINE_RUNS, "aria2c", "aria2c+sha", "single")


def one_round(base: str, names: dict[str, str], size: int, tmp: Path, runs: dict[str, Run], segments: int) -> None:
    """Every tool once, each into a fresh output folder that is removed afterwards."""
    for key, run in runs.items():
        out = tmp / f"out-{key.replace(' ', '-')}"
        out.mkdir()
        if key in ENGINE_RUNS:
            kind, segs, verify = ENGINE_RUNS[key]
            spent = timed(run, partial(engine_round, base, names, out, kind, segs or segments, verify))
            run.store_seconds.append(spent)
        elif key.startswith("aria2c"):
            timed(run, partial(aria2_round, base, names, out, segments, key == "aria2c+sha"), children=True)
        else:
            timed(run, partial(single_round, base, names, out))
        check_outputs(out, names, size)
        shutil.rmtree(out)
        os.sync()  # start the next tool without the previous one's dirty pages being written back


def report(runs: dict[str, Run], total: int, args: argparse.Namespace, network: str) -> None:
    print(
        f"\n{args.files} files x {args.size_mib} MiB, engine segments={args.segments}, aria2c -x{args.segments} "
        f"-s{args.segments}, {len(runs['engine'].seconds)} round(s), median; {network}, {os.cpu_count()} CPUs"
    )
    print(f"{'tool':<18}{'MiB/s':>8}{'seconds':>9}{'CPU s':>8}{'put_file s':>12}")
    for run in runs.values():
        store = f"{statistics.median(run.store_seconds):.2f}" if run.store_seconds else "-"
        print(
            f"{run.name:<18}{run.rate(total):>8.0f}{statistics.median(run.seconds):>9.2f}"
            f"{statistics.median(run.cpu):>8.2f}{store:>12}"
        )
    aria = runs["aria2c"].rate(total)
    single = runs["single"].rate(total) if "single" in runs else None
    print()
    for key in (k for k in ENGINE_RUNS if k in runs):
        rate = runs[key].rate(total)
        versus_single = f"    {key + '/single':<24} = {rate / single:.2f}" if single else ""
        print(f"{key + '/aria2c':<24} = {rate / aria:.2f}{versus_single}")
    if "aria2c+sha" in runs:
        sha = runs["aria2c+sha"].rate(total)
        for key in (k for k in ("engine>store", "engine>store+sha") if k in runs):
            print(f"{key + '/aria2c+sha':<24} = {runs[key].rate(total) / sha:.2f}  (both compute and check sha256)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--tools", default=",".join(ALL_TOOLS), help=f"comma-separated subset of {','.join(ALL_TOOLS)}")
    parser.add_argument("--tmp", type=Path, default=None, help="where to put the files (default: system temp)")
    parser.add_argument("--network", default="loopback,shaped", help="loopback, shaped or both (comma-separated)")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="shaped: round trip of every connection")
    parser.add_argument("--mbit", type=float, default=200.0, help="shaped: Mbit/s of every connection")
    args = parser.parse_args()
    if shutil.which("aria2c") is None:
        raise SystemExit("aria2c not found: apt-get install -y aria2")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    size = args.size_mib * MIB
    tools = [t for t in ALL_TOOLS if t in args.tools.split(",")]
    if "engine" not in tools or "aria2c" not in tools:
        raise SystemExit("--tools must include engine and aria2c")
    networks = [n for n in ("loopback", "shaped") if n in args.network.split(",")]
    shaping = Shaping(rtt_ms=args.rtt_ms, mbit_per_conn=args.mbit)
    results: dict[str, dict[str, Run]] = {}
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="ek-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "files").mkdir()
        print(f"generating {args.files} x {args.size_mib} MiB ...", flush=True)
        names = make_files(tmp / "files", args.files, size)
        os.sync()
        with file_server_process(tmp / "files") as origin:
            for network in networks:
                label = "loopback" if network == "loopback" else f"shaped ({shaping.describe()})"
                runs = results[label] = {k: Run(k) for k in tools}
                with contextlib.ExitStack() as stack:
                    base = origin if network == "loopback" else stack.enter_context(shaper_process(origin, shaping))
                    for i in range(args.repeat):
                        print(f"{network}: round {i + 1}/{args.repeat} ...", flush=True)
                        one_round(base, names, size, tmp, runs, args.segments)
    for label, runs in results.items():
        report(runs, size * args.files, args, label)


if __name__ == "__main__":
    main()
