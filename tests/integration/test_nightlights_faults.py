"""Faults: the object store down when jobs start; workers racing for the same jobs and results."""

import asyncio

import pytest
from fastapi.testclient import TestClient
from nl_support import MOMBASA, NAIROBI, TOKEN, add_area, open_services, run_workers
from sqlalchemy import func, select

from earthkeep.api.app import create_app
from earthkeep.api.routers.nightlights import router
from earthkeep.apikeys import create_key
from earthkeep.catalog.tables import Job
from earthkeep.jobs.worker import Worker
from earthkeep.nightlights import requests
from earthkeep.nightlights.processing import process_request
from earthkeep.nightlights.tables import Result
from earthkeep.store.obstore import ObstoreStore
from earthkeep.testbed import serve_app
from earthkeep.testbed.laads import LaadsArchive
from earthkeep.testbed.servers import free_port


@pytest.fixture
def laads(tmp_path):
    archive = LaadsArchive(tmp_path / "laads", token=TOKEN, tile_size=120)
    with serve_app(archive.app()) as base:
        archive.base_url = base
        yield archive


async def _until(predicate, timeout=60.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(predicate):
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_store_down_when_the_job_starts_then_back(db_url, tmp_path, laads, s3_server, s3_bucket):
    down = ObstoreStore.s3(s3_bucket, f"http://127.0.0.1:{free_port()}", s3_server.access_key,
                           s3_server.secret_key, s3_server.region, timeout_s=2)
    svc = open_services(db_url, tmp_path, down, laads_url=laads.base_url)
    try:
        app = create_app(services=svc)
        if not any(getattr(r, "path", "") == "/areas" for r in app.routes):
            app.include_router(router)
        with svc.sessions.begin() as s:
            key = {"Authorization": f"Bearer {create_key(s, 'k', ['ingest'])[1]}"}
        area = add_area(svc, NAIROBI)
        with TestClient(app) as client:  # the service answers while the store is down
            r = client.post("/nightlights/jobs", json={"area_id": area, "start_month": "2023-01",
                                                       "end_month": "2023-01"}, headers=key)
            assert r.status_code == 202
            request_id, job_id = r.json()["id"], r.json()["months"][0]["acquisition"]["id"]
            stop = asyncio.Event()
            worker = Worker(svc.queue, svc.registry, svc, concurrency=1, poll_s=0.05)
            task = asyncio.create_task(worker.run(stop))
            await _until(lambda: svc.queue.get(job_id).error is not None)
            stop.set()
            await task
            job = svc.queue.get(job_id)
            # retried with backoff (a fast worker may have tried twice before it stopped), not failed
            assert job.status == "pending" and "StoreUnavailable" in job.error
            assert 1 <= job.attempts < job.max_attempts
            assert client.get(f"/areas/{area}").status_code == 200
            assert client.get(f"/nightlights/jobs/{request_id}").json()["status"] == "running"
        svc.store = ObstoreStore.s3(s3_bucket, s3_server.url, s3_server.access_key, s3_server.secret_key,
                                    s3_server.region, timeout_s=10)
        [st] = await run_workers(svc, [request_id])
        assert st["status"] == "completed", st
        acq = st["months"][0]["acquisition"]
        assert acq["attempts"] >= 2 and "StoreUnavailable" in acq["error"]
        assert await svc.store.exists(f"nightlights/composites/{area}/2023-01.tif")
        with svc.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Result)) == 1
    finally:
        svc.close()


async def test_two_workers_racing_give_one_result_per_area_and_month(db_url, tmp_path, laads):
    one = open_services(db_url, tmp_path, ObstoreStore.local(tmp_path / "store"), laads_url=laads.base_url)
    two = open_services(db_url, tmp_path, ObstoreStore.local(tmp_path / "store"), laads_url=laads.base_url)
    try:
        a, b = add_area(one, NAIROBI, "a"), add_area(one, MOMBASA, "b")
        reqs = [requests.submit(one, a, "2023-01", "2023-02"), requests.submit(two, b, "2023-01", "2023-02"),
                requests.submit(two, a, "2023-02", "2023-03")]
        statuses = await run_workers(one, [r.id for r in reqs], services=[one, two, one, two])
        assert [s["status"] for s in statuses] == ["completed"] * 3, statuses
        with one.sessions() as s:
            rows = s.execute(select(Result.area_id, Result.month, func.count()).group_by(
                Result.area_id, Result.month).order_by(Result.area_id, Result.month)).all()
            etl = s.scalar(select(func.count()).select_from(Job).where(Job.kind == requests.ETL))
            acq = s.scalars(select(Job).where(Job.kind == requests.LAADS)).all()
        assert [tuple(r) for r in rows] == [(a, "2023-01", 1), (a, "2023-02", 1), (a, "2023-03", 1),
                                            (b, "2023-01", 1), (b, "2023-02", 1)]
        assert etl == 3 and all(j.status == "completed" for j in acq)
        assert len(acq) <= 6  # area a, 2023-02 is shared by two requests while it runs (deduplicated)
        # two workers processing the same request at once (a lost lease re-claimed): still one row each
        await asyncio.gather(process_request(one, reqs[0].id, job_id=None),
                             process_request(two, reqs[0].id, job_id=None))
        with one.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Result)) == 5
    finally:
        one.close()
        two.close()
