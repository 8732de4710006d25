"""Full discovery of a 20,000-dataset emulated CKAN portal: earthkeep vs a plain sequential ckanapi offset loop.

    .venv/bin/python bench/ckan.py [--datasets 20000] [--concurrency 8] [--latency realistic|none]
                                   [--db sqlite|postgres ...] [--db-url URL] [--repeat N]

The emulator (earthkeep.testbed.ckan) runs in its own process, like a remote
portal. ``--latency realistic`` (default) gives each package_search the server
time a CKAN portal spends: 50 ms per request, 0.5 ms per dataset returned (CKAN
builds every result dict) and 50 ms per thousand rows skipped with ``start``
(Solr collects start+rows documents); ``none`` measures pure CPU on this machine.

Both sides list every dataset with rows=1000; the peer pages ``start=0,1000,...``
one request at a time (what most harvest scripts do); earthkeep pages moving
``metadata_modified`` windows in parallel (earthkeep.sources.ckan.Lister). The
dataset ids found must be identical. Then earthkeep's whole discovery (what
``earthkeep rescue discover`` and ``POST /update-ckan`` run: listing + writing
organizations, datasets, resources, assets and history into a fresh catalog) is
timed against the same peer figure, and the catalog must hold exactly the
peer's dataset ids. Catalogs: ``--db sqlite`` (default, a file in a temporary
directory), ``--db postgres`` (a throwaway PostgreSQL cluster from
``earthkeep.testbed.servers``, which runs with fsync off like the test fixtures)
and ``--db-url URL`` (an empty database of your own); ``--db`` may be repeated.
``--repeat N`` runs each discovery N times into fresh catalogs and reports the
median, best and worst (this shared machine's load swings wall times; the peer,
which mostly waits on the portal, hardly moves).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from earthkeep.testbed.runner import child_server

LATENCY = {"realistic": (0.05, 0.0005, 0.05), "none": (0.0, 0.0, 0.0)}


def start_portal(datasets: int, latency: tuple[float, float, float]) -> AbstractContextManager[str]:
    """The CKAN emulator in a child process; yields its base URL."""
    code = (
        "import sys; from earthkeep.testbed.ckan import serve_ckan, Latency; "
        f"serve_ckan(port=int(sys.argv[1]), datasets={datasets}, latency=Latency(*{latency!r}), faults=False)"
    )
    return child_server(code, timeout_s=120)


def portal_cpu() -> float:
    """CPU seconds the portal process (this process's child) used since the last call."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    used, PORTAL_CPU[0] = total - PORTAL_CPU[0], total
    return used


PORTAL_CPU = [0.0]
DB_SERVER: list[object] = []  # the throwaway PostgreSQL of --db postgres, while it runs


def db_server_cpu() -> float | None:
    """CPU seconds of the throwaway PostgreSQL's processes alive now (postmaster and backends), or None."""
    import psutil

    if not DB_SERVER:
        return None
    pid = DB_SERVER[0]._postmaster_pid()  # type: ignore[attr-defined]
    if pid is None:
        return None
    total = 0.0
    try:
        pm = psutil.Process(pid)
        for proc in [pm, *pm.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    except psutil.Error:
        return None
    return total


def peer(base: str) -> tuple[set[str], float, int]:
    """The plain loop: sequential package_search with growing start offsets."""
    from ckanapi import RemoteCKAN

    started = time.perf_counter()
    ids: set[str] = set()
    requests = 0
    with RemoteCKAN(base) as ckan:
        start, count = 0, None
        while count is None or start < count:
            result = ckan.action.package_search(q="*:*", rows=1000, start=start, sort="metadata_modified asc")
            requests += 1
            count = result["count"]
            ids.update(d["id"] for d in result["results"])
            if not result["results"]:
                break
            start += 1000
    return ids, time.perf_counter() - started, requests


def earthkeep_listing(base: str, concurrency: int) -> tuple[set[str], float, int]:
    from earthkeep.sources.ckan import CkanClient, Lister

    started = time.perf_counter()
    client = CkanClient(base)
    lister = Lister(client, rows=1000, concurrency=concurrency)
    ids = {d["id"] for page in lister.pages() for d in page}
    client.close()
    return ids, time.perf_counter() - started, lister.stats.requests


@contextmanager
def catalog_urls(kind: str, n: int) -> Iterator[list[str]]:
    """``n`` empty catalogs: SQLite files, databases of one throwaway PostgreSQL, or the one URL given."""
    if kind == "sqlite":
        yield [f"sqlite:///{tempfile.mkdtemp(prefix='bench-ckan-')}/catalog.db" for _ in range(n)]
    elif kind == "postgres":
        from earthkeep.testbed.servers import PostgresServer

        with PostgresServer() as pg:
            DB_SERVER[:] = [pg]
            yield [pg.create_database(f"bench_ckan_{i}") for i in range(n)]
    else:
        yield [kind]  # an empty database of the user's: one run


class ThreadCpu:
    """CPU seconds each kind of thread used (threads named ``ckan_*``, ``rescue-writer_*``, the calling one)."""

    def __init__(self) -> None:
        import threading

        self.by_kind: dict[str, float] = {}
        self._run = threading.Thread.run
        meter = self

        def run(thread: threading.Thread) -> None:
            try:
                meter._run(thread)
            finally:
                kind = thread.name.split("_")[0]
                meter.by_kind[kind] = meter.by_kind.get(kind, 0.0) + time.thread_time()

        threading.Thread.run = run  # type: ignore[method-assign]
        self.main = time.thread_time()

    def stop(self) -> dict[str, float]:
        import threading

        threading.Thread.run = self._run  # type: ignore[method-assign]
        return {"preparing (calling thread)": time.thread_time() - self.main, **self.by_kind}


def earthkeep_discovery(base: str, concurrency: int, url: str) -> tuple[float, dict[str, object], set[str]]:
    """The product's whole discovery into the catalog at ``url``; the dataset ids it then holds."""
    from sqlalchemy import select

    from earthkeep.catalog.db import create_db_engine, session_factory
    from earthkeep.catalog.migrate import upgrade
    from earthkeep.rescue.discovery import DiscoveryRequest, discover
    from earthkeep.rescue.settings import RescueSettings
    from earthkeep.rescue.tables import Dataset

    engine = create_db_engine(url)
    upgrade(engine)
    settings = RescueSettings(portal=base, concurrency=concurrency)
    sessions = session_factory(engine)
    threads = ThreadCpu()
    db_before = db_server_cpu()
    started = time.perf_counter()
    out = discover(sessions, settings, DiscoveryRequest.from_settings(settings), allow_private=True)
    elapsed = time.perf_counter() - started
    out["cpu_by_thread"] = threads.stop()
    db_after = db_server_cpu()  # before the pool's backends exit
    out["db_cpu"] = None if db_before is None or db_after is None else db_after - db_before
    with sessions() as s:
        ids = set(s.scalars(select(Dataset.ckan_id).where(Dataset.portal == base.rstrip("/"))))
    engine.dispose()
    return elapsed, out, ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--latency", choices=sorted(LATENCY), default="realistic")
    ap.add_argument("--no-discovery", action="store_true", help="skip the end-to-end discovery run")
    ap.add_argument("--db", action="append", choices=["sqlite", "postgres"], help="catalog(s) for discovery")
    ap.add_argument("--db-url", action="append", default=[], help="an empty catalog database for discovery")
    ap.add_argument("--repeat", type=int, default=1, help="discovery runs per catalog kind (each into a fresh one)")
    args = ap.parse_args()
    catalogs = (args.db or ([] if args.db_url else ["sqlite"])) + args.db_url
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    latency = LATENCY[args.latency]
    with start_portal(args.datasets, latency) as base:
        peer_ids, peer_s, peer_req = peer(base)
        ek_ids, ek_s, ek_req = earthkeep_listing(base, args.concurrency)
        print(f"portal: {args.datasets} datasets, latency per request/dataset/1000 skipped = {latency} s")
        print(f"ckanapi offset loop (sequential): {len(peer_ids):6d} datasets in {peer_s:7.2f} s, {peer_req} requests")
        print(
            f"earthkeep windows (x{args.concurrency}):        {len(ek_ids):6d} datasets in {ek_s:7.2f} s, "
            f"{ek_req} requests"
        )
        same = peer_ids == ek_ids
        print(f"identical dataset ids: {same}; speed-up: {peer_s / ek_s:.1f}x")
        for kind in [] if args.no_discovery else catalogs:
            times = []
            with catalog_urls(kind, args.repeat) as urls:
                for url in urls:
                    portal_cpu()  # from here
                    disc_s, out, kept = earthkeep_discovery(base, args.concurrency, url)
                    times.append(disc_s)
                    name = kind if kind in ("sqlite", "postgres") else url.split("://")[0]
                    print(
                        f"earthkeep full discovery into {name} (listing + {out['created']} datasets, "
                        f"{out['resources']} resources, {out['assets']} assets, history): {disc_s:.2f} s, "
                        f"{out['requests']} requests; catalog holds the peer's ids: {kept == peer_ids}; "
                        f"speed-up: {peer_s / disc_s:.1f}x (load {os.getloadavg()[0]:.2f})"
                    )
                    cpu = ", ".join(f"{k} {v:.2f}" for k, v in out["cpu_by_thread"].items())  # type: ignore[attr-defined]
                    db_cpu = out["db_cpu"]
                    db = "" if db_cpu is None else f"; PostgreSQL (backends alive at the end): {db_cpu:.2f}"
                    print(f"  CPU seconds by thread: {cpu}; the portal process: {portal_cpu():.2f}{db}")
                    same = same and kept == peer_ids
            if len(times) > 1:
                med = statistics.median(times)
                print(
                    f"  {name}: median of {len(times)} {med:.2f} s ({peer_s / med:.1f}x), best {min(times):.2f} s "
                    f"({peer_s / min(times):.1f}x), worst {max(times):.2f} s ({peer_s / max(times):.1f}x)"
                )
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
