"""Which processes run which roles (heartbeats in the catalog), and /ready over the broker and the cache."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from earthkeep import instances
from earthkeep.api.app import create_app
from earthkeep.catalog.tables import ServiceInstance, utcnow
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.obstore import ObstoreStore
from earthkeep.testbed.servers import free_port


def _services(db_url, tmp_path, **sections) -> Services:
    return Services.open(load_settings(catalog={"database_url": db_url}, **sections),
                         store=ObstoreStore.local(tmp_path / "store"))


async def test_a_process_is_listed_with_its_roles_while_it_runs_and_gone_after(db_url, tmp_path, monkeypatch):
    monkeypatch.setattr(instances, "BEAT_S", 0.05)
    svc = _services(db_url, tmp_path)
    stop = asyncio.Event()
    task = asyncio.create_task(instances.heartbeat(svc, ["worker", "scheduler"], stop))
    try:
        for _ in range(100):
            rows = await asyncio.to_thread(instances.listing, svc)
            if rows:
                break
            await asyncio.sleep(0.02)
        assert [r["roles"] for r in rows] == [["worker", "scheduler"]] and rows[0]["alive"]
        first_seen = rows[0]["seen_at"]
        await asyncio.sleep(0.3)
        assert (await asyncio.to_thread(instances.listing, svc))[0]["seen_at"] > first_seen  # it beats
        with TestClient(create_app(services=svc)) as client:
            body = client.get("/status/services").json()
        assert body["roles_running"] == ["scheduler", "worker"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert await asyncio.to_thread(instances.listing, svc) == []
    svc.close()


def test_a_killed_process_is_reported_stale_not_alive(db_url, tmp_path):
    svc = _services(db_url, tmp_path)
    gone = instances.register(svc, ["api"])
    with svc.sessions.begin() as s:
        s.execute(update(ServiceInstance).where(ServiceInstance.id == gone).values(
            seen_at=utcnow() - timedelta(seconds=instances.STALE_S + 5)))
    instances.register(svc, ["worker"])
    rows = {tuple(r["roles"]): r["alive"] for r in instances.listing(svc)}
    assert rows == {("api",): False, ("worker",): True}
    with TestClient(create_app(services=svc)) as client:
        assert client.get("/status/services").json()["roles_running"] == ["worker"]
    svc.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_ready_checks_the_broker_it_needs_and_reports_a_cache_that_is_down(db_url, tmp_path, nats_server):
    down = f"redis://127.0.0.1:{free_port()}/0"
    up = _services(db_url, tmp_path, broker={"nats_url": nats_server.url, "redis_url": down},
                   ingest={"broker": "nats", "nats_url": nats_server.url})
    with TestClient(create_app(services=up)) as client:
        r = client.get("/ready")
    assert r.status_code == 200 and r.json()["status"] == "degraded"
    assert r.json()["checks"]["broker"] == "ok" and "unreachable" in r.json()["checks"]["cache"]
    dead = f"nats://127.0.0.1:{free_port()}"
    no_broker = _services(db_url, tmp_path, broker={"nats_url": dead}, ingest={"broker": "nats", "nats_url": dead})
    with TestClient(create_app(services=no_broker)) as client:
        r = client.get("/ready")
    assert r.status_code == 503 and "unreachable" in r.json()["checks"]["broker"]
    up.close()
    no_broker.close()
