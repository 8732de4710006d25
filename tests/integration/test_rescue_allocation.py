"""Allocation through the API (SQLite and PostgreSQL): replication, space, leases, verification, bad callers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rescue_support import auth, client, count, key, seed_catalog, services_for

from earthkeep.apikeys import revoke_key
from earthkeep.catalog.tables import utcnow
from earthkeep.rescue.allocation import reap
from earthkeep.rescue.domain import rank_now
from earthkeep.rescue.settings import RescueSettings

SHA_A, SHA_B = "a" * 64, "b" * 64


@pytest.fixture
def services(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    svc = services_for(db_url, tmp_path)
    svc.use_settings(RescueSettings(replication=2, lease_s=60, max_allocate=50, unknown_size_bytes=5000))
    seed_catalog(svc, n_datasets=10, per_dataset=2, size=1000)
    rank_now(svc)
    yield svc
    svc.close()


@pytest.fixture
def api(services):
    with client(services) as c:
        yield c


def node(api, services, name, capacity=10**9):
    secret = key(services, "node", name=name)
    r = api.post("/nodes/register", json={"name": name, "capacity_bytes": capacity}, headers=auth(secret))
    assert r.status_code == 200, r.text
    return auth(secret)


def allocate(api, headers, **body):
    r = api.post("/allocate", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["allocations"]


def release(api, headers, lease, **body):
    return api.post("/release", json={"allocation_id": lease["allocation_id"], **body}, headers=headers)


def test_replication_target_and_one_copy_per_node(api, services):
    nodes = [node(api, services, f"n{i}") for i in range(3)]
    got = [allocate(api, h) for h in nodes]
    assert len(got[0]) == len(got[1]) == 20 and got[2] == []  # 20 assets x 2 replicas, nothing left
    for leases in got[:2]:
        assert len({lease["asset_id"] for lease in leases}) == 20
    assert allocate(api, nodes[0]) == []  # never the same asset twice to one node
    assert count(services.engine, "SELECT max(replicas) FROM rescue_assets") == 2
    lease = got[0][0]
    assert {"url", "filename", "dataset", "size", "expires_at"} <= set(lease)


def test_free_space_bounds_what_a_node_gets(api, services):
    small = node(api, services, "small", capacity=3500)
    assert len(allocate(api, small)) == 3  # 1000 bytes each
    assert allocate(api, small, free_bytes=3500) == []  # its leases still reserve the space
    assert len(allocate(api, small, max_items=1, free_bytes=10**6)) == 1


def test_done_copies_are_cross_verified_and_a_wrong_checksum_is_flagged(api, services):
    a, b, c = (node(api, services, n) for n in ("a", "b", "c"))
    la, lb = allocate(api, a, max_items=1), allocate(api, b, max_items=1)
    assert la[0]["asset_id"] == lb[0]["asset_id"]
    first = release(api, a, la[0], status="done", size=1000, sha256=SHA_A).json()
    assert first["copy"]["state"] == "unconfirmed"
    second = release(api, b, lb[0], status="done", size=1000, sha256=SHA_B).json()
    assert second["copy"]["state"] == "disputed" and second["conflict"] is True
    lc = allocate(api, c, max_items=1)  # a disputed asset gets a tie-breaker copy
    assert lc[0]["asset_id"] == la[0]["asset_id"]
    third = release(api, c, lc[0], status="done", size=1000, sha256=SHA_A).json()
    assert third["copy"]["state"] == "verified" and third["verified_copies"] == 2
    copies = api.get(f"/rescue/assets/{la[0]['asset_id']}/copies").json()["copies"]
    assert sorted((x["state"], x["disagreement"]) for x in copies) == [
        ("disagrees", True), ("verified", False), ("verified", False)]
    assert count(services.engine, "SELECT replicas FROM rescue_assets WHERE id = :i", i=la[0]["asset_id"]) == 2
    again = release(api, c, lc[0], status="done", size=1000, sha256=SHA_A)  # a retried report changes nothing
    assert again.status_code == 200 and count(services.engine, "SELECT count(*) FROM rescue_copies") == 3
    assert release(api, c, lc[0], status="done", size=1000, sha256=SHA_B).status_code == 409


def test_a_portal_checksum_decides_at_once(api, services):
    with services.sessions.begin() as s:
        from sqlalchemy import update

        from earthkeep.rescue.tables import RescueAsset
        s.execute(update(RescueAsset).values(sha256_declared=SHA_A))
    a = node(api, services, "a")
    lease = allocate(api, a, max_items=1)[0]
    out = release(api, a, lease, status="done", size=1000, sha256=SHA_B).json()
    assert out["copy"]["state"] == "disagrees" and out["replicas"] == 0  # back in the pool for others


def test_failures_and_a_vanished_node(api, services):
    a, b = node(api, services, "a"), node(api, services, "b")
    leases = allocate(api, a, max_items=2)
    r = release(api, a, leases[0], status="failed", reason="HTTP 404", upstream=True).json()
    assert r["status"] == "failed" and r["replicas"] == 0
    assert count(services.engine, "SELECT count(*) FROM rescue_assets WHERE state = 'failing'") == 1
    # node a vanishes: its other lease expires and the asset returns to the pool
    with services.sessions.begin() as s:
        assert reap(s, now=utcnow() + timedelta(seconds=61)) == 1
    got = {x["asset_id"] for x in allocate(api, b)}
    assert {leases[0]["asset_id"], leases[1]["asset_id"]} <= got
    late = release(api, a, leases[1], status="done", size=1000, sha256=SHA_A)
    assert late.status_code == 200  # b holds the lease now, but the target (2) is not exceeded: kept
    assert count(services.engine, "SELECT max(replicas) FROM rescue_assets") <= 2
    hb = api.post("/allocations/heartbeat", json={"allocation_ids": [leases[1]["allocation_id"]]}, headers=a).json()
    assert hb["lost"] == [leases[1]["allocation_id"]]
    held = allocate(api, a, max_items=1)[0]
    one = api.post(f"/allocations/{held['allocation_id']}/heartbeat", headers=a).json()
    assert one == {"extended": [held["allocation_id"]], "lost": []}
    assert api.post(f"/allocations/{held['allocation_id']}/heartbeat", headers=b).json()["lost"] == [
        held["allocation_id"]]  # another node's lease is not extended


def test_bad_callers(api, services):
    assert api.post("/allocate", json={}).status_code == 401
    assert api.post("/allocate", json={}, headers=auth("ek_unknown")).status_code == 401
    reader = auth(key(services, "read"))
    assert api.post("/allocate", json={}, headers=reader).status_code == 403
    unregistered = auth(key(services, "node", name="ghost"))
    r = api.post("/allocate", json={}, headers=unregistered)
    assert r.status_code == 404 and "register" in r.json()["detail"]
    a = node(api, services, "a")
    lease = allocate(api, a, max_items=1)[0]
    with services.sessions.begin() as s:
        revoke_key(s, a["Authorization"].split()[1][:10])
    assert api.post("/allocate", json={}, headers=a).status_code == 401
    assert release(api, a, lease, status="done", size=1, sha256=SHA_A).status_code == 401
    b = node(api, services, "b")
    assert release(api, b, lease, status="done", size=1, sha256=SHA_A).status_code == 404  # not b's lease
    assert release(api, b, lease, status="done", size=-1, sha256=SHA_A).status_code == 422
    assert release(api, b, lease, status="done", size=1, sha256="xyz").status_code == 422
    assert api.post("/nodes/register", json={"name": "x", "capacity_bytes": 2**70}, headers=b).status_code == 422


def test_enormous_and_unknown_sizes(api, services):
    with services.sessions.begin() as s:
        from sqlalchemy import update

        from earthkeep.rescue.tables import RescueAsset
        s.execute(update(RescueAsset).where(RescueAsset.id <= 2).values(size=1 << 50))
        s.execute(update(RescueAsset).where(RescueAsset.id == 3).values(size=None))
    a = node(api, services, "a", capacity=10**6)
    got = {x["asset_id"] for x in allocate(api, a)}
    assert 1 not in got and 2 not in got and 3 in got  # unknown size reserves unknown_size_bytes (5000)
    assert count(services.engine, "SELECT reserved_bytes FROM rescue_allocations WHERE asset_id = 3") == 5000


def test_status_ranking_boost_and_update_ckan(api, services):
    a = node(api, services, "a")
    lease = allocate(api, a, max_items=1)[0]
    release(api, a, lease, status="done", size=1000, sha256=SHA_A)
    st = api.get("/status").json()
    assert st["datasets"]["total"] == 10 and st["assets"]["total"] == 20
    assert st["copies"]["total"] == 1 and st["nodes"][0]["done"] == 1 and st["in_flight"]["leases"] == 0
    ranking = api.get("/rescue/ranking?limit=5").json()
    assert len(ranking["ranking"]) == 5 and "components" in ranking["ranking"][0]
    admin = auth(key(services, "admin"))
    target = ranking["ranking"][-1]["asset_id"]
    assert api.post("/rescue/boosts", json={"asset_id": target, "boost": 1000}, headers=admin).status_code == 200
    assert api.get("/rescue/ranking?limit=1").json()["ranking"][0]["asset_id"] == target
    assert api.post("/rescue/boosts", json={"asset_id": 999999, "boost": 1}, headers=admin).status_code == 404
    assert api.post("/update-ckan", json={"full": True}, headers=a).status_code == 403
    r = api.post("/update-ckan", json={"full": True, "tags": ["climate"]}, headers=admin)
    assert r.status_code == 202 and services.queue.get(r.json()["job_id"]).kind == "rescue.discover"
    hist = api.get(f"/rescue/datasets/{lease['dataset_id']}/history").json()["history"]
    assert hist[0]["change"] == "created"
