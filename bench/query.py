"""Query latency over >= 10 million observations: aggregates and time series, rollup vs raw.

Loads one year of 5-minute observations for 116 stations (12.2 million rows)
into the real, monthly-partitioned ``ingest_observations`` table server-side
(``generate_series``, in time order with the stations interleaved, as they
arrive in production, so one station's rows are spread over many pages),
builds the hourly rollup from them (also in time order), then times, for
random stations, the queries the API runs (``earthkeep.ingest.queries``, no
Redis cache) against the peer: the same answer computed from raw rows with
``date_bin`` (how the seed pipeline answered every query).

* station-month: aggregate, and time series of hourly buckets (goal p95 <= 20 ms)
* station-year:  aggregate, and time series of daily buckets
* the station-month hourly series through the HTTP API (`earthkeep serve` in its own process)

    .venv/bin/python bench/query.py [--stations 116] [--iterations 200]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from earthkeep.testbed.servers import PostgresServer, RedisServer

YEAR = datetime(2023, 1, 1, tzinfo=UTC)

LOAD = """
INSERT INTO ingest_observations
SELECT 'ST' || lpad(s::text, 4, '0'), t,
       10 + 8 * sin(2 * pi() * extract(epoch FROM t) / 86400) + 10 * cos(2 * pi() * extract(doy FROM t) / 365)
          + random(),
       60 + 20 * random(), 1013 + 10 * sin(extract(epoch FROM t) / 400000.0), 5 * random(), 360 * random(),
       CASE WHEN random() < 0.05 THEN random() * 3 ELSE 0 END
FROM generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '5 minutes', interval '5 minutes') AS t,
     generate_series(1, %(stations)s) AS s
ORDER BY t, s
"""

ROLLUP = """
INSERT INTO ingest_hourly
SELECT station_id, date_bin('1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00'), count(*),
       {aggs}
FROM ingest_observations GROUP BY 1, 2 ORDER BY 2, 1
"""


def load(pg: PostgresServer, stations: int) -> tuple[Any, float]:
    import psycopg

    from earthkeep.catalog.db import create_db_engine
    from earthkeep.catalog.migrate import upgrade
    from earthkeep.ingest import partitions
    from earthkeep.ingest.models import MEASURE_NAMES

    url = pg.create_database("query_bench")
    engine = create_db_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    months = [YEAR]
    while len(months) < 12:
        months.append(partitions.next_month(months[-1]))
    aggs = ", ".join(f"min({m}), max({m}), coalesce(sum({m}), 0), count({m})" for m in MEASURE_NAMES)
    with psycopg.connect(pg.dsn("query_bench")) as conn:
        partitions.create(conn, months)
        for month in months:  # one statement per partition keeps each transaction modest
            conn.execute(LOAD, {"stations": stations, "lo": month, "hi": partitions.next_month(month)})
            conn.commit()
            print(f"  loaded {month:%Y-%m}", flush=True)
        conn.execute(ROLLUP.format(aggs=aggs))
        conn.execute("INSERT INTO ingest_stations SELECT DISTINCT station_id, station_id, 0, 0, 0, now() "
                     "FROM ingest_hourly")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        n = conn.execute("SELECT count(*) FROM ingest_observations").fetchone()[0]
    print(f"  {n:,} rows and their rollup in {time.perf_counter() - started:.0f} s")
    return engine, n


def timed(fn: Callable[[], Any], iterations: int) -> tuple[float, float]:
    fn()  # warm up
    samples = []
    for _ in range(iterations):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def raw_timeseries(engine: Any, station: str, lo: datetime, hi: datetime, seconds: int) -> list[Any]:
    from earthkeep.ingest import queries

    with queries.limited(engine, 60_000) as conn:
        stmt = queries._raw_buckets(engine.dialect.name, seconds, False)
        return conn.execute(stmt, {"station_id": station, "lo": lo, "hi": hi}).all()


def raw_aggregate(engine: Any, station: str, lo: datetime, hi: datetime) -> Any:
    from earthkeep.ingest import queries

    with queries.limited(engine, 60_000) as conn:
        return queries._raw_totals(conn, station, lo, hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stations", type=int, default=116)
    ap.add_argument("--iterations", type=int, default=200)
    args = ap.parse_args()
    from earthkeep.ingest import queries
    from earthkeep.logs import configure_logging

    configure_logging("WARNING")
    rng = random.Random(1)
    with PostgresServer() as pg:
        print(f"loading {args.stations} stations x 1 year of 5-minute observations ...")
        engine, n = load(pg, args.stations)

        def station() -> str:
            return f"ST{rng.randint(1, args.stations):04d}"

        month_lo = YEAR + timedelta(days=31 * rng.randint(0, 10))
        month_hi, year_hi = month_lo + timedelta(days=30), YEAR + timedelta(days=365)
        cases = [
            ("station-month aggregate", lambda: queries.aggregate(engine, station(), start=month_lo, end=month_hi),
             lambda: raw_aggregate(engine, station(), month_lo, month_hi)),
            ("station-month 1h series", lambda: queries.timeseries(engine, station(), start=month_lo,
                                                                   end=month_hi, interval="1h"),
             lambda: raw_timeseries(engine, station(), month_lo, month_hi, 3600)),
            ("station-year aggregate", lambda: queries.aggregate(engine, station(), start=YEAR, end=year_hi),
             lambda: raw_aggregate(engine, station(), YEAR, year_hi)),
            ("station-year 1d series", lambda: queries.timeseries(engine, station(), start=YEAR, end=year_hi,
                                                                  interval="1d"),
             lambda: raw_timeseries(engine, station(), YEAR, year_hi, 86400)),
        ]
        print(f"\n{n:,} rows; {args.iterations} queries each, random stations (ms)")
        print(f"{'query':<26}{'earthkeep p50':>14}{'p95':>8}{'raw peer p50':>14}{'p95':>8}{'p95 ratio':>11}")
        for label, ours, peer in cases:
            o50, o95 = timed(ours, args.iterations)
            p50, p95 = timed(peer, max(20, args.iterations // 10))
            print(f"{label:<26}{o50:>14.1f}{o95:>8.1f}{p50:>14.1f}{p95:>8.1f}{p95 / o95:>10.0f}x")
        http50, http95 = http_month(engine, pg, station, month_lo, month_hi, args.iterations, None)
        print(f"{'same 1h series via HTTP':<26}{http50:>14.1f}{http95:>8.1f}   (earthkeep serve, no cache)")
        with RedisServer() as redis:
            hit50, hit95 = http_month(engine, pg, lambda: "ST0001", month_lo, month_hi, args.iterations, redis.url)
        print(f"{'same, Redis cache hit':<26}{hit50:>14.1f}{hit95:>8.1f}")
        goal = "met" if http95 <= 20 else "NOT met"
        print(f"\ngoal p95 <= 20 ms for a station-month of hourly buckets (HTTP, uncached): {goal} ({http95:.1f} ms)"
              f"; load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def http_month(engine: Any, pg: PostgresServer, station: Callable[[], str], lo: datetime, hi: datetime,
               iterations: int, redis_url: str | None) -> tuple[float, float]:
    """The series through ``earthkeep serve --role api`` in its own process (uvicorn), over loopback HTTP."""
    import subprocess
    import sys
    import tempfile

    import httpx

    from earthkeep.testbed.servers import free_port, port_open, wait_until

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DATABASE_URL": pg.url_for("query_bench"), "EARTHKEEP_STORE_DIR": f"{tmp}/store",
               "LOG_LEVEL": "WARNING", "REDIS_URL": redis_url or ""}
        proc = subprocess.Popen([sys.executable, "-m", "earthkeep.cli.main", "serve", "--role", "api",
                                 "--port", str(port)], env=env, cwd=tmp, stdout=subprocess.DEVNULL)
        try:
            wait_until(lambda: port_open(port), timeout=60, what="earthkeep serve")
            params = {"start": lo.isoformat(), "end": hi.isoformat(), "interval": "1h"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
                def get() -> None:
                    r = client.get(f"/weather/timeseries/{station()}", params=params)
                    r.raise_for_status()
                    assert r.headers["x-cache"] == ("hit" if redis_url else "miss") or redis_url, r.headers

                get()  # connect once
                return timed(get, iterations)
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
