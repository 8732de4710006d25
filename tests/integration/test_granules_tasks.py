"""The task broker: identity and merging, directions, durability across restarts, the HTTP endpoints."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi.testclient import TestClient
from granules_support import config, emulator, open_services, readme_subscriber
from sqlalchemy import update

from earthkeep.api.app import create_app
from earthkeep.apikeys import create_key
from earthkeep.catalog.tables import utcnow
from earthkeep.granules import tasks
from earthkeep.granules.mirror import mirror
from earthkeep.granules.orbits import refresh_elements
from earthkeep.granules.service import Collector
from earthkeep.granules.tables import GranuleTask
from earthkeep.testbed.runner import serve_app

SUBJECT = "/AVO/viirs/granule/btd"


def dataset(orbit: int, start: str, uids: list[str], platform: str = "Suomi-NPP") -> dict:
    return {"product": "btd", "platform_name": platform, "orbit_number": orbit, "start_time": start,
            "end_time": start[:-2] + "59", "dataset": [{"uid": u, "uri": "/x/" + u, "start_time": start} for u in uids]}


def enqueue(svc, orbit: int, direction: str, uids: list[str], start: str = "2024-05-01T12:00:00",
            platform: str = "Suomi-NPP") -> tuple[int, bool]:
    with svc.sessions.begin() as s:
        t, created = tasks.enqueue(s, product="btd", subject=SUBJECT, data=dataset(orbit, start, uids, platform),
                                    direction=direction, orbit_slack=1)
        return t.id, created


def claim(svc, node: str = "n1", **kw) -> GranuleTask | None:
    with svc.sessions.begin() as s:
        return tasks.claim(s, node, **kw)


async def test_duplicates_update_the_queued_task_and_keep_its_place(db_url, tmp_path):
    svc = open_services(db_url, tmp_path)
    try:
        a, created_a = enqueue(svc, 100, "ascending", ["f1"])
        b, _ = enqueue(svc, 200, "ascending", ["g1"])
        a2, created_a2 = enqueue(svc, 101, "ascending", ["f2"], start="2024-05-01T11:58:00")  # within slack
        c, created_c = enqueue(svc, 103, "ascending", ["h1"])  # outside slack: a new task
        other, _ = enqueue(svc, 100, "ascending", ["n1"], platform="NOAA-20")
        assert created_a and not created_a2 and created_c and a2 == a
        with svc.sessions() as s:
            rows = tasks.list_tasks(s, status="queued")
        assert [t.id for t in rows] == [a, b, c, other]
        merged = rows[0]
        assert [d["uid"] for d in merged.data["dataset"]] == ["f2", "f1"]
        assert merged.data["start_time"] == "2024-05-01T11:58:00" and merged.updates == 1
        assert claim(svc).id == a and claim(svc).id == b
    finally:
        svc.close()


async def test_ascending_and_descending_passes_are_separate_and_claimed_by_filter(db_url, tmp_path):
    svc = open_services(db_url, tmp_path)
    try:
        up, _ = enqueue(svc, 100, "ascending", ["a"])
        down, created = enqueue(svc, 100, "descending", ["d"])
        assert created and up != down
        assert claim(svc, direction="descending").id == down
        assert claim(svc, product="other") is None
        assert claim(svc, product="btd", direction="ascending").id == up
        assert claim(svc) is None
    finally:
        svc.close()


async def test_broker_restart_with_tasks_queued_loses_none(db_url, tmp_path):
    svc = open_services(db_url, tmp_path)
    ids = [enqueue(svc, 100 + 10 * i, "ascending", [f"f{i}"])[0] for i in range(5)]
    held = claim(svc, "crashed-node", lease_s=60)
    svc.close()  # the service stops with four tasks queued and one claimed
    svc = open_services(db_url, tmp_path)
    try:
        with svc.sessions() as s:
            assert [t.id for t in tasks.list_tasks(s)] == ids
            assert [t.status for t in tasks.list_tasks(s)] == ["claimed"] + ["queued"] * 4
        with svc.sessions.begin() as s:  # the crashed node's lease runs out
            s.execute(update(GranuleTask).where(GranuleTask.id == held.id)
                      .values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        order = [claim(svc, "n2").id for _ in range(5)]
        assert order == ids and claim(svc, "n2") is None
    finally:
        svc.close()


def _key(svc, *scopes: str) -> dict[str, str]:
    with svc.sessions.begin() as s:
        return {"Authorization": f"Bearer {create_key(s, 'proc-' + '-'.join(scopes), list(scopes))[1]}"}


def _client(svc) -> TestClient:
    from earthkeep.api.routers.granules import router

    app = create_app(services=svc)
    if not any(getattr(r, "path", None) == "/tasks/claim" for r in app.routes):
        app.include_router(router)
    return TestClient(app)


async def test_claim_complete_and_fail_over_http(tmp_path):
    svc = open_services(f"sqlite:///{tmp_path}/c.db", tmp_path)
    try:
        first, _ = enqueue(svc, 100, "ascending", ["a"])
        second, _ = enqueue(svc, 100, "descending", ["b"])
        node, reader = _key(svc, "node"), _key(svc, "read")
        with _client(svc) as http:
            assert http.post("/tasks/claim", json={}).status_code == 401
            assert http.post("/tasks/claim", json={}, headers=reader).status_code == 403
            r = http.post("/tasks/claim", json={"direction": "descending", "node": "p1"}, headers=node)
            assert r.status_code == 200 and r.json()["id"] == second
            from posttroll.message import Message

            msg = Message.decode(r.json()["message"])
            assert msg.subject == SUBJECT and msg.data["dataset"][0]["uid"] == "b"
            assert http.post(f"/tasks/{second}/complete", json={"node": "other"}, headers=node).status_code == 409
            assert http.post(f"/tasks/{second}/complete", json={"node": "p1"}, headers=node).json()["status"] == "done"
            r = http.post("/tasks/claim", json={"node": "p1"}, headers=node)
            assert r.json()["id"] == first
            r = http.post(f"/tasks/{first}/fail", json={"node": "p1", "error": "boom", "retry": True}, headers=node)
            assert r.json()["status"] == "queued"
            assert http.post("/tasks/claim", json={"node": "p2"}, headers=node).json()["id"] == first
            assert http.post("/tasks/claim", json={"node": "p2"}, headers=node).status_code == 204
            listed = http.get("/tasks").json()
            assert [(t["id"], t["status"]) for t in listed] == [(first, "claimed"), (second, "done")]
            assert http.get("/tasks/status").json()["tasks"]["done"] == 1
            assert http.post("/tasks/999/complete", json={}, headers=node).status_code == 404
    finally:
        svc.close()


async def test_mirrored_granules_become_dataset_messages_and_directed_tasks(tmp_path):
    emu = emulator(tmp_path)
    emu.add_granules(3)
    svc = open_services(f"sqlite:///{tmp_path}/c.db", tmp_path)
    try:
        with serve_app(emu.app()) as base:
            cfg = config(svc, base)
            await refresh_elements(svc, base + "/elements/weather.txt")
            with readme_subscriber(cfg.viirs.publish_address, "pytroll://AVO/viirs/granule/btd",
                                   "pytroll://AVO/viirs/tasks/status") as sub:
                async with Collector(svc, cfg, join_grace_s=0.3) as collector:
                    await asyncio.sleep(0.5)
                    await mirror(svc, cfg, hooks=collector.hooks())
                    msgs = []
                    while sum(m.type == "dataset" for m in msgs) < 3 and len(msgs) < 200:
                        msg = await asyncio.to_thread(sub.recv, 10.0)
                        assert msg is not None, "no dataset message within 10 s"
                        msgs.append(msg)
                    status = await collector.publish_status()
        datasets = [m for m in msgs if m.type == "dataset"]
        assert len(datasets) == 3
        assert all(m.data["segments"] == ["GMTCO", "SVM15", "SVM16"] for m in datasets)
        assert any(m.type == "info" and m.subject == "/AVO/viirs/tasks/status" for m in msgs)
        with svc.sessions() as s:
            rows = tasks.list_tasks(s)
        assert rows and {t.direction for t in rows} <= {"ascending", "descending"}
        assert sum(len(t.data["dataset"]) for t in rows) == 9  # every file in exactly one task
        assert sum(n for d in status["queued"].values() for n in d.values()) == len(rows)
    finally:
        svc.close()
