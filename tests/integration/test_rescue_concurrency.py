"""50 nodes allocating and releasing at once on PostgreSQL: never over-allocated, nothing double-counted."""

from __future__ import annotations

import random
import threading
from collections import Counter

from rescue_support import key, seed_catalog
from sqlalchemy import text

from earthkeep.catalog.db import translate_errors
from earthkeep.errors import SourceUnavailable
from earthkeep.rescue import allocation
from earthkeep.rescue.domain import rank_now
from earthkeep.rescue.settings import RescueSettings
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.obstore import ObstoreStore

NODES = 50
SETTINGS = RescueSettings(replication=2, lease_s=300, max_allocate=5)


def _key_row(services, secret):
    from earthkeep.apikeys import authenticate

    with services.sessions.begin() as s:
        return authenticate(s, secret, "node")


def _tx(services, fn, *args, **kwargs):
    for attempt in range(5):
        try:
            with translate_errors("catalog"), services.sessions.begin() as s:
                return fn(s, *args, **kwargs)
        except SourceUnavailable:
            if attempt == 4:
                raise
    return None


def _node_loop(services, api_key, seed, errors, leased):
    rng = random.Random(seed)
    try:
        _tx(services, allocation.register_node, api_key, name=f"n{seed}", capacity_bytes=10**9)
        empty = 0
        while empty < 2:
            leases = _tx(services, allocation.allocate, SETTINGS, api_key)
            empty = empty + 1 if not leases else 0
            for lease in leases:
                leased.append((lease.asset_id, seed))
                ok = rng.random() < 0.85
                _tx(services, allocation.release, SETTINGS, api_key, lease.allocation_id,
                    status="done" if ok else "failed", size=1000 if ok else None,
                    sha256=(f"{lease.asset_id:064x}") if ok else None, reason=None if ok else "disk full")
    except Exception as exc:  # surfaced by the test
        errors.append(exc)


def _drain(services, keys, leased):
    while True:
        got = 0
        for api_key in keys:
            for lease in _tx(services, allocation.allocate, SETTINGS, api_key):
                leased.append((lease.asset_id, keys.index(api_key)))
                _tx(services, allocation.release, SETTINGS, api_key, lease.allocation_id, status="done",
                    size=1000, sha256=f"{lease.asset_id:064x}")
                got += 1
        if not got:
            return


def test_fifty_nodes_never_over_allocate(pg_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(catalog={"database_url": pg_url, "pool_size": 25})
    services = Services.open(settings, store=ObstoreStore.local(tmp_path / "store"))
    services.use_settings(SETTINGS)
    seed_catalog(services, n_datasets=150, per_dataset=2)  # 300 assets, 600 copies wanted
    rank_now(services)
    keys = [_key_row(services, key(services, "node", name=f"n{i}")) for i in range(NODES)]
    errors: list[Exception] = []
    leased: list[tuple[int, int]] = []
    threads = [threading.Thread(target=_node_loop, args=(services, k, i, errors, leased)) for i, k in enumerate(keys)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors[:3]
    _drain(services, keys, leased)  # leases that failed after the other nodes had stopped asking
    assert max(Counter(leased).values()) == 1  # never the same asset twice to one node
    with services.engine.connect() as conn:
        per_asset = conn.execute(text("""
            SELECT a.id, a.replicas,
                   (SELECT count(*) FROM rescue_allocations l WHERE l.asset_id = a.id AND l.status = 'active'),
                   (SELECT count(*) FROM rescue_copies c WHERE c.asset_id = a.id AND c.state <> 'disagrees')
            FROM rescue_assets a""")).all()
        copies = conn.execute(text("SELECT count(*) FROM rescue_copies")).scalar_one()
        done = conn.execute(text("SELECT count(*) FROM rescue_allocations WHERE status = 'done'")).scalar_one()
    assert all(active + held <= 2 for _, _, active, held in per_asset)  # zero over-allocation
    assert all(replicas == active + held for _, replicas, active, held in per_asset)  # counter exact
    assert copies == done  # every done release is one copy, none lost or double-counted
    assert sum(held for *_, held in per_asset) == 600  # failures went back to the pool and were retaken
    services.close()
