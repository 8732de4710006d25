"""Station ingest throughput: generator -> HTTP collector -> NATS JetStream -> consumer -> PostgreSQL.

One command, one run, six measurements on the same PostgreSQL and NATS
(throwaway servers from the testbed, PostgreSQL with fsync off as in the tests):

* ceiling:  raw ``COPY`` of the distinct rows into ``ingest_observations`` (no
  rollup, no broker, no HTTP): what the database alone takes;
* writer:   the consumer's write path alone (COPY into staging, insert ON
  CONFLICT DO NOTHING, hourly rollup, commit) in batches of 2,000;
* earthkeep end to end: simulated stations POST NDJSON batches (1,000 records)
  from several concurrent clients to the collector (uvicorn, one process), which
  publishes one JetStream message per 1,000 records (the default) and answers
  after the acks; one consumer process (``--consumers`` consumers on one
  connection) writes to PostgreSQL. The clock stops when the database holds
  every distinct valid record; the stored set is then compared exactly;
* the same with ``message_mode = "record"`` (one JetStream message per record);
* baseline (the original way): the same collector and stream, but the consumer
  does one ``INSERT`` and commit per message (as the seed pipeline did);
* the embedded mode: the collector writes through to PostgreSQL (no broker).

For each pipeline it also prints the CPU time every process used per record
(collector, consumer, nats-server, PostgreSQL backends, this client), which other
work on the machine does not change.

    .venv/bin/python bench/ingest.py [--records 200000] [--baseline-records 20000] [--clients 4]
        [--consumers 3] [--fetch-batch 3000] [--only batch|record|embedded ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from earthkeep.testbed.servers import NatsServer, PostgresServer, free_port, port_open, wait_until

STATIONS = 100
T0 = datetime(2024, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- children


def _ingest_settings(cfg: dict[str, Any]) -> Any:
    from earthkeep.ingest.settings import IngestSettings

    return IngestSettings(broker=cfg["broker"], nats_url=cfg["nats_url"], stream=cfg["stream"],
                          subject_prefix=cfg["subject"], durable=cfg["durable"], api_consumers=0, rate_limit=0,
                          max_batch=100_000, max_body_bytes=64 << 20, fetch_batch=cfg["fetch_batch"],
                          max_ack_pending=50_000, stats_every_s=5, message_mode=cfg.get("mode", "record"))


def child_serve(cfg: dict[str, Any]) -> None:
    """The API (collector) in its own process."""
    import uvicorn

    from earthkeep.api.app import create_app
    from earthkeep.api.routers.ingest import router
    from earthkeep.ingest.runtime import runtime_for
    from earthkeep.logs import configure_logging
    from earthkeep.runtime import Services, freeze_startup_objects
    from earthkeep.settings import load_settings
    from earthkeep.store.obstore import ObstoreStore

    configure_logging("WARNING")
    services = Services.open(load_settings(catalog={"database_url": cfg["db"]}),
                             store=ObstoreStore.local(Path(cfg["tmp"]) / "store"))
    runtime_for(services, _ingest_settings(cfg))
    app = create_app(services=services)
    if not any(getattr(r, "original_router", r) is router or getattr(r, "path", None) == "/observations"
                   for r in app.routes):
        app.include_router(router)
    freeze_startup_objects()  # as earthkeep serve does
    uvicorn.run(app, host="127.0.0.1", port=cfg["port"], log_level="warning", access_log=False)


def child_consume(cfg: dict[str, Any]) -> None:
    """The earthkeep consumer."""
    from earthkeep.catalog.db import create_db_engine
    from earthkeep.ingest.consumer import run_consumers
    from earthkeep.logs import configure_logging
    from earthkeep.runtime import freeze_startup_objects
    from earthkeep.waits import run

    configure_logging("WARNING")
    engine = create_db_engine(cfg["db"])
    freeze_startup_objects()  # as `earthkeep weather consume` does

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await run_consumers(engine, _ingest_settings(cfg), stop, count=cfg.get("consumers", 1))

    run(main())  # as `earthkeep weather consume` runs it


def child_baseline(cfg: dict[str, Any]) -> None:
    """The original way: one INSERT (and commit) per message, then ack."""
    import nats
    import psycopg

    from earthkeep.ingest.jetstream import ensure_stream

    conn = psycopg.connect(cfg["db"].replace("postgresql+psycopg", "postgresql"), autocommit=True)
    sql = ("INSERT INTO ingest_observations (station_id, ts, temperature, humidity, pressure, wind_speed, "
           "wind_direction, precipitation) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        nc = await nats.connect(cfg["nats_url"])
        await ensure_stream(nc, _ingest_settings(cfg))
        sub = await nc.jetstream().pull_subscribe_bind(cfg["durable"], cfg["stream"])
        while not stop.is_set():
            try:
                msgs = await sub.fetch(100, timeout=0.5)
            except Exception:
                continue
            for m in msgs:
                r = orjson.loads(m.data)
                conn.execute(sql, (r["station_id"], r["timestamp"], r.get("temperature"), r.get("humidity"),
                                   r.get("pressure"), r.get("wind_speed"), r.get("wind_direction"),
                                   r.get("precipitation")))
                await m.ack()
        await nc.close()

    asyncio.run(main())


def _spawn(role: str, cfg: dict[str, Any]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--child", role, json.dumps(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


# ------------------------------------------------------------------ data


def make_data(n: int, seed: int) -> tuple[list[Any], list[dict[str, Any]], set[str]]:
    from earthkeep.ingest.simulator import Simulator, make_stations

    sim = Simulator(make_stations(STATIONS, seed=seed, prefix=f"B{seed}_"), T0, step_s=60, seed=seed,
                    duplicate_rate=0.02, late_rate=0.01, invalid_rate=0.005)
    records = sim.batch(n) + sim.flush()
    return sim.stations, records, sim.expected


def bodies(records: list[dict[str, Any]], size: int) -> list[bytes]:
    return [b"\n".join(orjson.dumps(r) for r in records[i:i + size]) for i in range(0, len(records), size)]


def new_db(pg: PostgresServer, name: str, stations: list[Any]) -> str:
    from sqlalchemy.orm import Session

    from earthkeep.catalog.db import create_db_engine
    from earthkeep.catalog.migrate import upgrade
    from earthkeep.ingest.stations import upsert_stations

    url = pg.create_database(name)
    engine = create_db_engine(url)
    upgrade(engine)
    with Session(engine) as s:
        upsert_stations(s, stations)
        s.commit()
    engine.dispose()
    import psycopg

    from earthkeep.ingest import partitions

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        partitions.create(conn, [partitions.month_start(T0)])  # the baseline does not make partitions
    return url


def rows(url: str) -> int:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        return int(conn.execute("SELECT count(*) FROM ingest_observations").fetchone()[0])


class Progress:
    """How many rows arrived, asked cheaply over one connection (the pipeline shares the cores with it).

    earthkeep keeps the hourly rollup in the same transaction as the rows, so the
    sum of its counts is the row count; the baseline keeps no rollup and is counted.
    """

    def __init__(self, url: str, *, rollup: bool) -> None:
        import psycopg

        self.conn = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True)
        self.sql = ("SELECT coalesce(sum(n), 0) FROM ingest_hourly" if rollup
                    else "SELECT count(*) FROM ingest_observations")

    def rows(self) -> int:
        return int(self.conn.execute(self.sql).fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def stored(url: str) -> set[str]:
    import psycopg

    from earthkeep.ingest.models import dedupe_key

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        return {dedupe_key(s, t) for s, t in conn.execute("SELECT station_id, ts FROM ingest_observations")}


# ------------------------------------------------------------ measurements


def ceiling(pg: PostgresServer, records: list[dict[str, Any]], stations: list[Any]) -> dict[str, float]:
    import psycopg

    from earthkeep.ingest.models import validate_records
    from earthkeep.ingest.writer import copy_rows

    good, _ = validate_records(records, known_station=lambda _: True)
    distinct = list({g.key: g for g in good}.values())
    url = new_db(pg, "ceiling", stations)
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        t = time.perf_counter()
        with conn.cursor() as cur:
            copy_rows(cur, "COPY ingest_observations FROM STDIN (FORMAT BINARY)", distinct)
        conn.commit()
        dt = time.perf_counter() - t
    return {"rows": len(distinct), "seconds": dt, "rate": len(distinct) / dt}


def writer_rate(pg: PostgresServer, records: list[dict[str, Any]], stations: list[Any]) -> dict[str, float]:
    from earthkeep.catalog.db import create_db_engine
    from earthkeep.ingest.models import validate_records
    from earthkeep.ingest.writer import ObservationWriter

    good, _ = validate_records(records, known_station=lambda _: True)
    engine = create_db_engine(new_db(pg, "writer", stations))
    w = ObservationWriter(engine)
    t = time.perf_counter()
    inserted = sum(w.write(good[i:i + 2000]).inserted for i in range(0, len(good), 2000))
    dt = time.perf_counter() - t
    engine.dispose()
    return {"rows": inserted, "seconds": dt, "rate": len(good) / dt}


async def post_all(port: int, payloads: list[bytes], clients: int) -> dict[str, int]:
    import httpx

    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    totals = {"accepted": 0, "rejected": 0, "retries": 0}
    headers = {"Authorization": f"Bearer {KEY['secret']}", "Content-Type": "application/x-ndjson"}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            while True:
                r = await client.post("/observations", content=body, headers=headers)
                if r.status_code in (202, 422):
                    totals["accepted"] += r.json()["accepted"]
                    totals["rejected"] += r.json()["rejected"]
                    break
                totals["retries"] += 1
                await asyncio.sleep(0.2)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, trust_env=False) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return totals


KEY: dict[str, str] = {}
CONSUMERS = 3
FETCH_BATCH = 3000


def cpu_of(pid: int | None, *, children: bool = True) -> float:
    """CPU seconds (user + system) used so far by ``pid``, its live children and the children it reaped."""
    import psutil

    if pid is None:
        return 0.0
    try:
        proc = psutil.Process(pid)
        t = proc.cpu_times()
        if not children:
            return t.user + t.system
        total = t.user + t.system + t.children_user + t.children_system
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system
        return total
    except psutil.Error:
        return 0.0


class CpuMeter:
    """CPU seconds per role over one measurement: where a record's cost goes, whatever else the machine runs."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.start = {role: self._cpu(role) for role in pids}

    def _cpu(self, role: str) -> float:  # the bench process itself only: its children have their own roles
        return cpu_of(self.pids[role], children=role != "clients")

    def used(self) -> dict[str, float]:
        return {role: self._cpu(role) - self.start[role] for role in self.pids}


def pipeline(pg: PostgresServer, nats: NatsServer, name: str, consumer: str | None, n: int, seed: int,
             clients: int, tmp: str, mode: str = "record") -> dict[str, Any]:
    """Run one end-to-end measurement; the exact stored set is checked against what was sent."""
    from sqlalchemy.orm import Session

    from earthkeep.apikeys import create_key
    from earthkeep.catalog.db import create_db_engine

    stations, records, expected = make_data(n, seed)
    url = new_db(pg, name, stations)
    with Session(create_db_engine(url)) as s:
        KEY["secret"] = create_key(s, "bench", ["ingest"])[1]
        s.commit()
    cfg = {"db": url, "tmp": tmp, "port": free_port(), "nats_url": nats.url, "stream": f"BENCH_{name}",
           "subject": f"bench.{name}", "durable": f"bench_{name}", "broker": "embedded" if consumer is None else "nats",
           "mode": mode, "consumers": CONSUMERS, "fetch_batch": FETCH_BATCH}
    payloads = bodies(records, 1000)
    procs = [_spawn("serve", cfg)]
    if consumer:
        procs.append(_spawn(consumer, cfg))
    try:
        wait_until(lambda: port_open(cfg["port"]), timeout=60, what="collector")
        time.sleep(1.0)  # let the children finish starting (their start-up CPU is not the pipeline's)
        roles = {"collector": procs[0].pid, "consumer": procs[1].pid if consumer else None,
                 "nats-server": nats.pid if consumer else None, "postgres": pg._postmaster_pid(),
                 "clients": os.getpid()}
        meter = CpuMeter(roles)
        started = time.perf_counter()
        totals = asyncio.run(post_all(cfg["port"], payloads, clients))
        accepted_s = time.perf_counter() - started
        deadline = time.monotonic() + 600
        progress = Progress(url, rollup=consumer != "baseline")
        while progress.rows() < len(expected):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{name}: only {rows(url)} of {len(expected)} rows arrived")
            time.sleep(0.05)
        done_s = time.perf_counter() - started
        progress.close()
        cpu = meter.used()
    finally:
        for p in procs:
            _stop(p)
    exact = stored(url) == expected
    return {"sent": len(records), "distinct": len(expected), "accepted": totals["accepted"],
            "rejected": totals["rejected"], "retries": totals["retries"], "accepted_s": accepted_s,
            "seconds": done_s, "rate": len(records) / done_s, "exact": exact,
            "cpu_us": {role: 1e6 * sec / len(records) for role, sec in cpu.items() if sec > 0}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--baseline-records", type=int, default=20_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--consumers", type=int, default=3,
                    help="consumers in the consumer process (one connection; as `earthkeep weather consume`)")
    ap.add_argument("--fetch-batch", type=int, default=3000,
                    help="records a consumer pulls at a time (EARTHKEEP_INGEST_FETCH_BATCH's default)")
    ap.add_argument("--only", choices=["record", "batch", "embedded"], action="append",
                    help="run only these earthkeep pipelines (and the baseline); repeatable")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global CONSUMERS, FETCH_BATCH
    CONSUMERS, FETCH_BATCH = args.consumers, args.fetch_batch
    if args.child:
        {"serve": child_serve, "consume": child_consume, "baseline": child_baseline}[args.child[0]](
            json.loads(args.child[1]))
        return
    from earthkeep.logs import configure_logging

    configure_logging("WARNING")
    print(f"ingest benchmark on {os.cpu_count()} cores: {args.records} records "
          f"(2% duplicates, 1% late, 0.5% invalid), {STATIONS} stations, {args.clients} HTTP clients")
    with tempfile.TemporaryDirectory() as tmp, PostgresServer() as pg, NatsServer() as nats:
        stations, records, _ = make_data(args.records, 1)
        ceil = ceiling(pg, records, stations)
        print(f"ceiling  raw COPY                          {ceil['rate']:>9,.0f} rows/s")
        wr = writer_rate(pg, records, stations)
        print(f"writer   COPY+ON CONFLICT+rollup (2k)      {wr['rate']:>9,.0f} rows/s")
        wanted = args.only or ["batch", "record", "embedded"]
        results: dict[str, dict[str, Any]] = {}
        for seed, (mode, label) in enumerate(PIPELINES.items(), start=2):
            if mode not in wanted:
                continue
            consumer = None if mode == "embedded" else "consume"
            results[mode] = pipeline(pg, nats, mode, consumer, args.records, seed, args.clients, tmp,
                                     mode="batch" if mode == "embedded" else mode)
            _report(label, results[mode])
        base = pipeline(pg, nats, "base", "baseline", args.baseline_records, 9, args.clients, tmp)
        _report("baseline  NATS, 1 INSERT+commit/message", base)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work shares them)")
    for mode, r in results.items():
        ratio, share = r["rate"] / base["rate"], r["rate"] / ceil["rate"]
        print(f"{PIPELINES[mode]:<42} / baseline {ratio:>5.1f}x   / COPY ceiling {share:.2f}"
              f"   50,000 obs/s goal: {'met' if r['rate'] >= 50_000 else 'NOT met'}")


PIPELINES = {
    "batch": "earthkeep NATS, 1 msg/1000 records (default)",
    "record": "earthkeep NATS, 1 msg/record",
    "embedded": "earthkeep embedded write-through",
}


def _report(label: str, r: dict[str, Any]) -> None:
    print(f"{label:<42} {r['rate']:>9,.0f} obs/s  ({r['sent']} sent, {r['distinct']} distinct stored "
          f"{'exactly' if r['exact'] else 'WRONG'}, collector done in {r['accepted_s']:.1f} s, "
          f"all stored in {r['seconds']:.1f} s, {r['retries']} retried requests)")
    cpu = r["cpu_us"]
    total = sum(cpu.values())
    parts = ", ".join(f"{role} {us:.1f}" for role, us in cpu.items())
    cores = os.cpu_count() or 1
    print(f"{'':<42} CPU per record: {total:.1f} us ({parts}); "
          f"CPU-bound rate on {cores} idle cores ~{cores / total * 1e6:,.0f} obs/s")


if __name__ == "__main__":
    main()
