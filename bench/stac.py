"""STAC item search on PostgreSQL: earthkeep's `GET /stac/search` against the plain SQL query, side by side.

One run: a throwaway PostgreSQL (the testbed's, fsync off), ``--items`` catalog items COPYed in (1-degree
footprints spread over the globe, valid times over a year, ``--collections`` collections), the app served on
loopback by uvicorn; then ``--queries`` searches of ``bbox`` (30 x 30 degrees) + ``datetime`` (30 days),
``limit`` 100, each followed over ``--pages`` pages by its ``next`` link. The peer is the floor: the same
filter and keyset paging as one SQL statement through psycopg, no HTTP, no JSON. It prints p50/p95 per page
and their ratio. No pgstac here: earthkeep keeps the catalog in its own tables (see docs/stac.md).

    .venv/bin/python bench/stac.py [--items 1000000] [--queries 20] [--pages 10]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from earthkeep.testbed.servers import PostgresServer

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def load(pg: PostgresServer, n: int, collections: int) -> str:
    import psycopg

    from earthkeep.catalog.db import create_db_engine
    from earthkeep.catalog.migrate import upgrade

    url = pg.url_for("postgres")
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    rng = random.Random(7)
    started = time.perf_counter()
    buf = io.StringIO()
    now = datetime.now(UTC).isoformat()
    for i in range(n):
        w, s = rng.uniform(-180, 179), rng.uniform(-90, 89)
        t = (T0 + timedelta(minutes=rng.randrange(365 * 24 * 60))).isoformat()
        buf.write(f"c{i % collections}\titem-{i}\t{t}\t{t}\t{w}\t{s}\t{w + 1}\t{s + 1}\t{{}}\t{now}\t{now}\n")
    with psycopg.connect(pg.dsn("postgres")) as conn, conn.cursor() as cur:
        with cur.copy("COPY items (collection, item_id, start_datetime, end_datetime, west, south, east, north, "
                      "properties, created_at, updated_at) FROM STDIN") as copy:
            copy.write(buf.getvalue())
        cur.execute("ANALYZE items")
    print(f"loaded {n:,} items in {time.perf_counter() - started:.1f} s")
    return url


def queries(k: int) -> list[tuple[list[float], str]]:
    rng = random.Random(11)
    out = []
    for _ in range(k):
        w, s = rng.uniform(-180, 150), rng.uniform(-60, 30)
        start = T0 + timedelta(days=rng.randrange(330))
        end = start + timedelta(days=30)
        out.append(([w, s, w + 30, s + 30], f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"))
    return out


def run_api(base: str, qs: list[tuple[list[float], str]], pages: int) -> tuple[list[float], int]:
    lat, returned = [], 0
    with httpx.Client(timeout=120) as c:
        for bbox, dt in qs:
            url: str | None = f"{base}/stac/search"
            params: dict[str, str] | None = {"bbox": ",".join(f"{v:.4f}" for v in bbox), "datetime": dt,
                                             "limit": "100"}
            for _ in range(pages):
                if url is None:
                    break
                t0 = time.perf_counter()
                r = c.get(url, params=params)
                lat.append(time.perf_counter() - t0)
                r.raise_for_status()
                body = r.json()
                returned += len(body["features"])
                url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
                params = None
    return lat, returned


def run_sql(pg: PostgresServer, qs: list[tuple[list[float], str]], pages: int) -> tuple[list[float], int]:
    import psycopg

    sql = ("SELECT pk, collection, item_id, start_datetime, end_datetime, west, south, east, north, properties "
           "FROM items WHERE west <= %s AND east >= %s AND south <= %s AND north >= %s "
           "AND end_datetime >= %s AND start_datetime <= %s AND pk > %s ORDER BY pk LIMIT 101")
    lat, returned = [], 0
    with psycopg.connect(pg.dsn("postgres")) as conn, conn.cursor() as cur:
        for (w, s, e, n), dt in qs:
            lo, hi = (datetime.fromisoformat(p.replace("Z", "+00:00")) for p in dt.split("/"))
            after = 0
            for _ in range(pages):
                t0 = time.perf_counter()
                cur.execute(sql, (e, w, n, s, lo, hi, after))
                rows = cur.fetchall()
                lat.append(time.perf_counter() - t0)
                returned += min(len(rows), 100)
                if len(rows) <= 100:
                    break
                after = rows[99][0]
    return lat, returned


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) >= 2 else values[0] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--collections", type=int, default=5)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--pages", type=int, default=10)
    args = ap.parse_args()
    from earthkeep.api.app import create_app
    from earthkeep.runtime import Services
    from earthkeep.settings import load_settings
    from earthkeep.store.obstore import ObstoreStore
    from earthkeep.testbed.runner import serve_app

    with PostgresServer() as pg:
        url = load(pg, args.items, args.collections)
        qs = queries(args.queries)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            services = Services.open(load_settings(catalog={"database_url": url}), migrate=False,
                                     store=ObstoreStore.local(Path(tmp)))
            app = create_app(services=services)
            app.state.services = services  # serve_app runs without the lifespan that sets it
            with serve_app(app) as base:
                run_api(base, qs[:2], 1)  # warm the pool and the planner
                api_lat, api_n = run_api(base, qs, args.pages)
            services.close()
        sql_lat, sql_n = run_sql(pg, qs, args.pages)
    print(f"{args.items:,} items, {args.queries} searches x up to {args.pages} pages of 100 (bbox 30x30 deg + 30 days)")
    print(f"{'':22} {'pages':>6} {'items':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for name, lat, n in (("earthkeep /stac/search", api_lat, api_n), ("plain SQL (psycopg)", sql_lat, sql_n)):
        print(f"{name:22} {len(lat):6d} {n:7d} {pct(lat, 50):8.1f} {pct(lat, 95):8.1f}")
    print(f"ratio earthkeep / SQL: p50 {pct(api_lat, 50) / pct(sql_lat, 50):.1f}x, "
          f"p95 {pct(api_lat, 95) / pct(sql_lat, 95):.1f}x; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
