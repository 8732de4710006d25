"""50 simulated rescue nodes calling POST /allocate and POST /release concurrently against PostgreSQL.

    .venv/bin/python bench/allocate.py [--nodes 50] [--datasets 2500] [--workers 2]

Starts a throwaway PostgreSQL (earthkeep.testbed.servers), seeds datasets with
two file assets each (target replication 2), serves the API with uvicorn
(``--workers`` processes) and runs ``--nodes`` client threads, each with its own
``node`` key: allocate up to 5 assets, release each as done (size + sha256),
repeat until the server has nothing left for it. Prints allocations/s and
releases/s, then checks in the database that no asset ever had more than 2
copies in flight + held, that no node got an asset twice and that every release
became exactly one copy. There is no external peer: the seed service logged
allocations to a JSON file; the ratio printed is against the replication target.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import text

HERE = Path(__file__).resolve().parent


def make_app():  # uvicorn --factory entry point (one per worker process)
    from earthkeep.api.app import create_app
    from earthkeep.api.routers.rescue import router
    from earthkeep.rescue.settings import RescueSettings
    from earthkeep.runtime import Services
    from earthkeep.settings import load_settings
    from earthkeep.store.obstore import ObstoreStore

    settings = load_settings()
    services = Services.open(settings, migrate=False, store=ObstoreStore.local(Path(os.environ["BENCH_STORE"])))
    services.use_settings(RescueSettings(replication=2, lease_s=600, max_allocate=5))
    app = create_app(services=services)
    if not any(getattr(r, "path", None) == "/allocate" for r in app.routes):
        app.include_router(router)
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(url: str, datasets: int, nodes: int) -> list[str]:
    from earthkeep.apikeys import create_key
    from earthkeep.rescue.catalog import Context, persist_page
    from earthkeep.rescue.domain import rank_now
    from earthkeep.rescue.settings import RescueSettings
    from earthkeep.runtime import Services
    from earthkeep.settings import load_settings
    from earthkeep.store.obstore import ObstoreStore

    svc = Services.open(load_settings(catalog={"database_url": url}), store=ObstoreStore.local(Path("/tmp")))
    svc.use_settings(RescueSettings())
    ctx = Context("https://portal.example.gov", None, 1 << 44, allow_private=False)
    for start in range(0, datasets, 1000):
        records = [{"id": f"d-{i}", "name": f"ds-{i}", "metadata_modified": "2020-01-01T00:00:00",
                    "organization": {"id": "o", "name": "noaa-gov"},
                    "resources": [{"id": f"d-{i}-r{j}", "url": f"https://data.example.gov/{i}/{j}.csv",
                                   "size": 1000 + i} for j in range(2)]}
                   for i in range(start, min(start + 1000, datasets))]
        with svc.sessions.begin() as s:
            persist_page(s, ctx, records)
    rank_now(svc)
    with svc.sessions.begin() as s:
        secrets = [create_key(s, f"node-{i}", ["node"])[1] for i in range(nodes)]
    svc.close()
    return secrets


def node_loop(base: str, secret: str, n: int, out: dict[str, list[float]], errors: list[str]) -> None:
    headers = {"authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        http.post("/nodes/register", json={"name": f"node-{n}", "capacity_bytes": 10**12}).raise_for_status()
        while True:
            r = http.post("/allocate", json={"max_items": 5})
            if r.status_code != 200:
                errors.append(r.text[:200])
                return
            leases = r.json()["allocations"]
            out["allocated"].append(len(leases))
            if not leases:
                return
            for lease in leases:
                body = {"allocation_id": lease["allocation_id"], "status": "done", "size": lease["size"],
                        "sha256": "{:064x}".format(lease["asset_id"])}
                rr = http.post("/release", json=body)
                if rr.status_code != 200:
                    errors.append(rr.text[:200])
                out["released"].append(1)


def check(url: str) -> dict[str, int]:
    from earthkeep.catalog.db import create_db_engine

    engine = create_db_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT (SELECT count(*) FROM rescue_allocations l WHERE l.asset_id = a.id AND l.status = 'active')
                 + (SELECT count(*) FROM rescue_copies c WHERE c.asset_id = a.id AND c.state <> 'disagrees')
            FROM rescue_assets a""")).scalars().all()
        pairs = conn.execute(text("SELECT asset_id, node_id FROM rescue_allocations")).all()
        copies = conn.execute(text("SELECT count(*) FROM rescue_copies")).scalar_one()
        done = conn.execute(text("SELECT count(*) FROM rescue_allocations WHERE status = 'done'")).scalar_one()
    engine.dispose()
    return {"assets": len(rows), "over_allocated": sum(1 for n in rows if n > 2),
            "duplicate_pairs": sum(1 for n in Counter(pairs).values() if n > 1), "copies": copies, "done": done,
            "full": sum(1 for n in rows if n == 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--datasets", type=int, default=2500)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    logging.disable(logging.INFO)
    from earthkeep.testbed.servers import PostgresServer

    with PostgresServer() as pg:
        url = pg.create_database("bench_allocate")
        from earthkeep.catalog.db import create_db_engine
        from earthkeep.catalog.migrate import upgrade

        eng = create_db_engine(url)
        upgrade(eng)
        eng.dispose()
        secrets = seed(url, args.datasets, args.nodes)
        port = free_port()
        env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "BENCH_STORE": "/tmp/bench-allocate",
               "EARTHKEEP_DB_POOL_SIZE": "20"}
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "allocate:make_app",
                                   "--app-dir", str(HERE), "--port", str(port), "--workers", str(args.workers),
                                   "--log-level", "warning", "--no-access-log"], env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait(base)
            out: dict[str, list[float]] = {"allocated": [], "released": []}
            errors: list[str] = []
            threads = [threading.Thread(target=node_loop, args=(base, s, i, out, errors))
                       for i, s in enumerate(secrets)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=20)
        allocated = int(sum(out["allocated"]))
        result = check(url)
        print(f"{args.nodes} nodes, {result['assets']} assets x replication 2, API with {args.workers} workers "
              f"on PostgreSQL")
        print(f"allocations: {allocated} in {elapsed:.2f} s = {allocated / elapsed:.0f} allocations/s "
              f"({len(out['allocated'])} /allocate calls, {len(out['released'])} /release calls, "
              f"{(len(out['allocated']) + len(out['released'])) / elapsed:.0f} requests/s)")
        print(f"over-allocated assets: {result['over_allocated']}; duplicate (asset, node) leases: "
              f"{result['duplicate_pairs']}; copies {result['copies']} == done releases {result['done']}; "
              f"fully replicated {result['full']}/{result['assets']}; errors {len(errors)}")
        if result["over_allocated"] or result["duplicate_pairs"] or errors or result["copies"] != result["done"]:
            print("FAILED", errors[:3])
            sys.exit(1)


def _wait(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("API did not start")


if __name__ == "__main__":
    main()
