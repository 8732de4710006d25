"""The JetStream pipeline end to end: HTTP collector -> NATS -> consumer -> PostgreSQL (and Redis cache)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from ingest_support import app_client, count, key, register, rollup_total, stored_keys

from earthkeep.ingest.settings import IngestSettings
from earthkeep.ingest.simulator import Simulator, make_stations
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.obstore import ObstoreStore

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def nats_settings(nats_url: str, name: str, **extra) -> IngestSettings:
    return IngestSettings(broker="nats", nats_url=nats_url, stream=f"OBS_{name}", subject_prefix=f"t.{name}",
                          durable=f"w_{name}", rate_limit=0, fetch_batch=500, fetch_wait_s=0.2,
                          ack_wait_s=3, stats_every_s=0.2, **extra)


@pytest.fixture
def services(pg_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    svc = Services.open(load_settings(catalog={"database_url": pg_url}), store=ObstoreStore.local(tmp_path / "s"))
    yield svc
    svc.close()


def wait_for(check, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("mode", ["record", "batch"])
def test_http_to_nats_to_postgres_exactly_once(services, nats_server, mode):
    name = f"e2e_{mode}"
    sim = Simulator(make_stations(8), T0, step_s=60, duplicate_rate=0.1, late_rate=0.05, invalid_rate=0.05)
    register(services, sim.stations)
    records = sim.batch(6000) + sim.flush()
    settings = nats_settings(nats_server.url, name, message_mode=mode, batch_message_records=200)
    with app_client(services, settings) as client:
        h = key(services, "ingest")
        accepted = rejected = duplicates = 0
        for i in range(0, len(records), 500):
            r = client.post("/observations", json=records[i:i + 500], headers=h)
            assert r.status_code == 202, r.text
            accepted += r.json()["accepted"]
            rejected += r.json()["rejected"]
            duplicates += r.json()["duplicates"]
        assert rejected == sim.invalid_sent and accepted + duplicates + rejected == len(records)
        # record mode: JetStream drops each repeat (Nats-Msg-Id); batch mode: the collector drops the repeats
        # within a request, the consumer and the database those across requests (queued again: accepted)
        assert accepted == len(sim.expected) if mode == "record" else accepted >= len(sim.expected)
        wait_for(lambda: count(services.engine, "ingest_observations") >= len(sim.expected), what="consumer")
        resent = client.post("/observations", json=records[:500], headers=h).json()
        assert resent["accepted"] == 0  # a resent request is dropped by the server
        assert resent["duplicates"] == resent["received"] - resent["rejected"]
        wait_for(lambda: client.get("/consumer/stats").json()["inserted"] == len(sim.expected), what="stats")
        stats = client.get("/consumer/stats").json()
        assert stats["lag"]["pending"] == 0 and stats["received"] == accepted
    assert sorted(stored_keys(services.engine)) == sorted(sim.expected)
    assert rollup_total(services.engine)["n"] == len(sim.expected)


def test_trace_id_flows_from_http_through_nats_to_consumer_logs(services, nats_server, request):
    name = "trace"
    sim = Simulator(make_stations(2), T0, step_s=60)
    register(services, sim.stations)
    with structlog.testing.capture_logs() as logs, app_client(services, nats_settings(nats_server.url, name)) as c:
        r = c.post("/observations", json=sim.batch(20),
                   headers={**key(services, "ingest"), "X-Request-ID": "trace-from-station-42"})
        assert r.status_code == 202 and r.json()["trace_id"] == "trace-from-station-42"
        wait_for(lambda: any(e["event"] == "ingest.consumed" for e in logs), what="consumer log")
    consumed = [e for e in logs if e["event"] == "ingest.consumed"]
    assert consumed and all(e["trace_id"] == "trace-from-station-42" for e in consumed)
    assert sum(e["records"] for e in consumed) == 20
    published = [e for e in logs if e["event"] == "ingest.published"]
    assert published[0]["trace_id"] == "trace-from-station-42"


def test_redis_cache_hits_and_is_invalidated_by_new_data(services, nats_server, redis_server):
    s = nats_settings(nats_server.url, "cache", redis_url=redis_server.url)
    sim = Simulator(make_stations(1, prefix="C"), T0, step_s=600)
    register(services, sim.stations)
    sid = sim.stations[0].id
    with app_client(services, s) as client:
        h = key(services, "ingest")
        assert client.post("/observations", json=sim.batch(30), headers=h).status_code == 202
        wait_for(lambda: count(services.engine, "ingest_observations") == 30, what="first batch")
        params = {"start": T0.isoformat(), "end": (T0 + timedelta(days=1)).isoformat()}
        first = client.get(f"/weather/aggregate/{sid}", params=params)
        second = client.get(f"/weather/aggregate/{sid}", params=params)
        assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
        assert first.json() == second.json() and first.json()["count"] == 30
        assert client.post("/observations", json=sim.batch(10), headers=h).status_code == 202
        wait_for(lambda: count(services.engine, "ingest_observations") == 40, what="second batch")

        def fresh():
            r = client.get(f"/weather/aggregate/{sid}", params=params)
            return r.headers["X-Cache"] == "miss" and r.json()["count"] == 40

        wait_for(fresh, timeout=10, what="invalidation")
        assert client.get(f"/weather/aggregate/{sid}", params=params).headers["X-Cache"] == "hit"
