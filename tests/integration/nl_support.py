"""Helpers of the nightlights integration tests (imported by test_nightlights_*.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from earthkeep.jobs.worker import Worker
from earthkeep.nightlights import areas, requests
from earthkeep.nightlights.geometry import parse_area
from earthkeep.nightlights.settings import NightlightsSettings
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.base import Store

TOKEN = "earthdata-test-token"
NAIROBI = [[[36.55, -1.55], [37.05, -1.55], [37.05, -1.05], [36.55, -1.05], [36.55, -1.55]]]
MOMBASA = [[[39.45, -4.25], [40.35, -4.25], [40.35, -3.75], [39.45, -3.75], [39.45, -4.25]]]  # two tiles


def open_services(db_url: str, tmp_path: Path, store: Store, **nightlights: Any) -> Services:
    settings = load_settings(catalog={"database_url": db_url}, transfer={"work_dir": str(tmp_path / "partial")},
                             worker={"backoff_base_s": 0.05})
    svc = Services.open(settings, store=store)
    svc.use_settings(NightlightsSettings(**{"earthdata_token": TOKEN, **nightlights}))
    return svc


def add_area(svc: Services, coords: list = NAIROBI, name: str = "area") -> int:
    with svc.sessions.begin() as s:
        return areas.create_area(s, parse_area({"type": "Polygon", "coordinates": coords}), name=name).id


async def run_workers(svc: Services, request_ids: list[int], *, workers: int = 1, timeout: float = 120.0,
                      lease_s: float = 30.0, services: list[Services] | None = None) -> list[dict[str, Any]]:
    """Run ``workers`` workers (each its own owner) until every request has ended; return their statuses."""
    stop = asyncio.Event()
    pool = services or [svc] * workers
    runners = [Worker(s.queue, s.registry, s, concurrency=2, poll_s=0.05, lease_s=lease_s, reap_every_s=0.5)
               for s in pool]
    tasks = [asyncio.create_task(w.run(stop)) for w in runners]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            statuses = [await asyncio.to_thread(requests.request_status, svc, r) for r in request_ids]
            if all(st["status"] in ("completed", "failed", "cancelled") for st in statuses):
                return statuses
            if loop.time() > deadline:
                raise AssertionError(f"requests did not end in {timeout} s: {statuses}")
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
