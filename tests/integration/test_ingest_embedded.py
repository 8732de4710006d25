"""The collector in embedded mode (write-through) on SQLite and PostgreSQL: bad input, duplicates, queries."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from ingest_support import app_client, count, key, register, rollup_total, stored_keys
from sqlalchemy import text

from earthkeep.ingest.models import Station
from earthkeep.ingest.settings import IngestSettings
from earthkeep.ingest.simulator import Simulator, make_stations
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.obstore import ObstoreStore

T0 = datetime(2024, 3, 1, tzinfo=UTC)
STATIONS = [Station(id="KSEA", name="Seattle", latitude=47.45, longitude=-122.31, elevation=131),
            Station(id="PANC", name="Anchorage", latitude=61.17, longitude=-150.0, elevation=46)]


@pytest.fixture
def services(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    svc = Services.open(load_settings(catalog={"database_url": db_url}), store=ObstoreStore.local(tmp_path / "s"))
    register(svc, STATIONS)
    yield svc
    svc.close()


@pytest.fixture
def settings():
    return IngestSettings(broker="embedded", max_batch=500, max_body_bytes=64 * 1024, rate_limit=0)


@pytest.fixture
def client(services, settings):
    with app_client(services, settings) as c:
        yield c


def obs(station="KSEA", minutes=0, **values):
    values = values or {"temperature": 10.0 + minutes / 60, "humidity": 80.0}
    return {"station_id": station, "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(), **values}


def test_post_needs_the_ingest_scope(client, services):
    assert client.post("/observations", json=obs()).status_code == 401
    assert client.post("/observations", json=obs(), headers=key(services, "read")).status_code == 403
    assert client.post("/observations", json=obs(), headers=key(services, "ingest")).status_code == 202


def test_bad_records_get_reasons_and_dead_letters(client, services):
    h = key(services, "ingest")
    batch = [
        obs(minutes=0),
        obs(minutes=1, temperature=75.0),                     # out of range
        obs(minutes=2, temperature="warm"),                   # wrong type
        obs(minutes=3, humidity=True),                        # bool is not a number
        obs(station="NOWHERE", minutes=4),                    # unknown station
        {"station_id": "KSEA", "temperature": 3.0},           # missing timestamp
        obs(minutes=60 * 24 * 365 * 30, temperature=1.0),     # thirty years in the future
        {**obs(minutes=7), "temprature": 1.0},                # misspelt field
        "not an object",
        obs(minutes=9),
    ]
    r = client.post("/observations", json=batch, headers=h)
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["received"], body["accepted"], body["rejected"]) == (10, 2, 8)
    reasons = {e["index"]: e["reason"] for e in body["errors"]}
    assert "less than or equal to 60" in reasons[1]
    assert "valid number" in reasons[2] and "valid number" in reasons[3]
    assert "unknown station 'NOWHERE'" in reasons[4]
    assert "timestamp: Field required" in reasons[5]
    assert "in the future" in reasons[6]
    assert "temprature" in reasons[7]
    assert "expected a JSON object, got string" in reasons[8]
    assert sorted(stored_keys(services.engine)) == sorted(
        [f"KSEA|{(T0 + timedelta(minutes=m)).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}" for m in (0, 9)])
    letters = client.get("/observations/dead-letters", headers=h).json()["dead_letters"]
    assert len(letters) == 8 and {d["source"] for d in letters} == {"collector"}
    assert all(d["trace_id"] == body["trace_id"] for d in letters)


def test_all_rejected_is_422_and_malformed_json_is_refused(client, services):
    h = key(services, "ingest")
    r = client.post("/observations", json=obs(temperature=-300.0), headers=h)
    assert r.status_code == 422 and r.json()["rejected"] == 1
    r = client.post("/observations", content=b'[{"station_id": "KSEA", ', headers=h)
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    r = client.post("/observations", content=b"42", headers=h)
    assert r.status_code == 422
    assert count(services.engine, "ingest_observations") == 0


def test_counts_add_up_with_an_in_batch_duplicate_and_an_already_stored_record(client, services):
    h = key(services, "ingest")
    assert client.post("/observations", json=obs(minutes=0), headers=h).json()["accepted"] == 1
    batch = [obs(minutes=0), obs(minutes=1), obs(minutes=1, temperature=2.0), obs(minutes=2), obs(temperature=99.0)]
    body = client.post("/observations", json=batch, headers=h).json()
    assert (body["received"], body["accepted"], body["duplicates"], body["rejected"]) == (5, 2, 2, 1)
    assert body["received"] == body["accepted"] + body["duplicates"] + body["rejected"]
    assert count(services.engine, "ingest_observations") == 3
    only_repeats = client.post("/observations", json=[obs(minutes=1), obs(minutes=1), obs(temperature=99.0)],
                               headers=h)
    assert only_repeats.status_code == 202  # valid records, all known: not "nothing acceptable"
    assert {k: only_repeats.json()[k] for k in ("accepted", "duplicates", "rejected")} == {
        "accepted": 0, "duplicates": 2, "rejected": 1}


def test_ndjson_with_a_malformed_line(client, services):
    lines = [orjson.dumps(obs(minutes=0)), b"{oops", b"", orjson.dumps(obs(minutes=1))]
    r = client.post("/observations", content=b"\n".join(lines),
                    headers={**key(services, "ingest"), "Content-Type": "application/x-ndjson"})
    assert r.status_code == 202
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["errors"][0]["index"] == 1 and "line 2: malformed JSON" in body["errors"][0]["reason"]
    assert count(services.engine, "ingest_observations") == 2


def test_oversized_bodies_and_batches(client, services):
    h = key(services, "ingest")
    big = [obs(minutes=i) for i in range(501)]
    r = client.post("/observations", json=big, headers=h)
    assert r.status_code == 413 and "at most 500" in r.json()["detail"]
    r = client.post("/observations", content=b"[" + b" " * 70_000 + b"]", headers=h)
    assert r.status_code == 413
    assert count(services.engine, "ingest_observations") == 0


def test_duplicate_storm_and_out_of_order_store_each_once(client, services):
    h = key(services, "ingest")
    minutes = list(range(120))
    shuffled = minutes[::-1] + minutes[::3] + minutes[::2]
    for i in range(0, len(shuffled), 50):
        assert client.post("/observations", json=[obs(minutes=m) for m in shuffled[i:i + 50]],
                           headers=h).status_code == 202
    again = client.post("/observations", json=[obs(minutes=m) for m in minutes[:50]] * 3, headers=h).json()
    assert again["accepted"] == 0 and again["duplicates"] == 150
    assert count(services.engine, "ingest_observations") == 120
    assert rollup_total(services.engine) == {"n": 120, "temperature_count": 120}
    stats = client.get("/consumer/stats").json()
    assert stats["inserted"] == 120 and stats["broker"] == "embedded"
    assert stats["received"] == stats["inserted"] + stats["dropped_db"] + stats["dropped_memory"]
    # the resent storm never reached the database: its 100 repeats within the request stopped at the
    # collector, its 50 first copies at the broker's cache of recent keys
    assert stats["dropped_memory"] >= 50


def test_rate_limit_per_key(services):
    s = IngestSettings(broker="embedded", rate_limit=10, rate_burst=20)
    with app_client(services, s) as client:
        a, b = key(services, "ingest"), key(services, "ingest")
        assert client.post("/observations", json=[obs(minutes=i) for i in range(20)], headers=a).status_code == 202
        r = client.post("/observations", json=obs(minutes=30), headers=a)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert client.post("/observations", json=obs(minutes=31), headers=b).status_code == 202


def test_queries_raw_aggregate_timeseries(client, services):
    h = key(services, "ingest")
    sim = Simulator(make_stations(1, prefix="Q"), T0, step_s=300)
    register(services, sim.stations)
    records = sim.batch(12 * 24 * 3)  # three days of 5-minute data
    for i in range(0, len(records), 200):
        assert client.post("/observations", json=records[i:i + 200], headers=h).status_code == 202
    sid = sim.stations[0].id

    page = client.get(f"/weather/{sid}", params={"limit": 500}).json()
    assert len(page["observations"]) == 500 and page["next"]
    rest = client.get(f"/weather/{sid}", params={"limit": 1000, "cursor": page["next"]}).json()
    assert len(rest["observations"]) == len(records) - 500 and rest["next"] is None
    assert rest["observations"][0]["timestamp"] > page["observations"][-1]["timestamp"]

    start, end = T0 + timedelta(minutes=17), T0 + timedelta(days=2, minutes=43)
    agg = client.get(f"/weather/aggregate/{sid}", params={"start": start.isoformat(), "end": end.isoformat()})
    inside = [r for r in records if start <= datetime.fromisoformat(r["timestamp"]) < end]
    temps = [r["temperature"] for r in inside]
    m = agg.json()["measures"]["temperature"]
    assert agg.json()["count"] == len(inside) == m["count"]
    assert m["min"] == min(temps) and m["max"] == max(temps)
    assert m["avg"] == pytest.approx(sum(temps) / len(temps))

    for interval, source in (("1h", "rollup"), ("1d", "rollup"), ("15m", "raw")):
        ts = client.get(f"/weather/timeseries/{sid}", params={
            "start": T0.isoformat(), "end": (T0 + timedelta(days=3)).isoformat(), "interval": interval}).json()
        assert ts["source"] == source
        assert sum(b["count"] for b in ts["buckets"]) == len(records)
        first = ts["buckets"][0]
        width = {"1h": 12, "1d": 288, "15m": 3}[interval]
        assert first["count"] == width
        assert first["temperature"]["max"] == max(r["temperature"] for r in records[:width])

    assert client.get("/weather/NOPE").status_code == 404
    bad = client.get(f"/weather/timeseries/{sid}", params={"start": T0.isoformat(),
                                                           "end": T0.isoformat(), "interval": "7x"})
    assert bad.status_code == 422


def test_retention_drops_old_raw_rows_but_keeps_rollups(client, services):
    from earthkeep.ingest.retention import apply_retention

    h = key(services, "ingest")
    old = [obs(minutes=m, temperature=1.0) for m in range(0, 600, 10)]                           # March
    new = [obs(minutes=m, temperature=2.0) for m in range(60 * 24 * 90, 60 * 24 * 90 + 60, 10)]  # late May
    assert client.post("/observations", json=old + new, headers=h).status_code == 202
    out = apply_retention(services.engine, raw_days=30, rollup_days=None, now=T0 + timedelta(days=100))
    pg = services.engine.dialect.name == "postgresql"
    assert out["deleted_raw"] == (0 if pg else len(old))  # on PostgreSQL the whole month was dropped
    assert count(services.engine, "ingest_observations") == len(new)
    assert rollup_total(services.engine)["n"] == len(old) + len(new)
    if pg:
        assert "ingest_observations_p202403" in out["dropped_partitions"]
        with services.engine.connect() as conn:
            assert conn.execute(text("SELECT to_regclass('ingest_observations_p202403')")).scalar() is None
    # a late record for the dropped month still goes in (its partition is made again)
    assert client.post("/observations", json=obs(minutes=5, temperature=3.0), headers=h).status_code == 202
    assert count(services.engine, "ingest_observations") == len(new) + 1


def test_generator_start_status_stop(client, services):
    h = key(services, "ingest")
    params = {"stations": 3, "rate": 2000, "batch_size": 200, "duration_s": 1.0, "duplicate_rate": 0.05,
              "late_rate": 0.02, "invalid_rate": 0.05, "backfill_s": 3600}
    assert client.post("/generator/start", json=params).status_code == 401
    r = client.post("/generator/start", json=params, headers=h)
    assert r.status_code == 200 and r.json()["running"] is True
    deadline = time.monotonic() + 30
    while client.get("/generator/status").json()["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status = client.get("/generator/status").json()
    assert status["sent"] >= 1000 and status["rejected"] > 0 and status["failed_batches"] == 0
    assert count(services.engine, "ingest_observations") == status["extra"]["distinct_valid_sent"]
    assert client.post("/generator/stop", headers=h).json()["running"] is False
    assert len(client.get("/stations").json()["stations"]) == len(STATIONS) + 3


def test_hourly_series_equals_the_raw_rows_and_slow_queries_time_out(services, db_url):
    """The 1h series (rollup rows, binary fetch on PostgreSQL) matches the raw rows; a timeout is a QueryTimeout."""
    from earthkeep.ingest import queries

    engine = services.engine
    from earthkeep.ingest.models import Obs
    from earthkeep.ingest.writer import ObservationWriter

    rows = [Obs("PANC", T0 + timedelta(minutes=10 * i), (i % 13) * 1.5, None, 990.0 + i % 5) for i in range(6 * 24)]
    ObservationWriter(engine).write(rows)  # raw rows and the rollup, as the collector writes them
    series = queries.timeseries(engine, "PANC", start=T0, end=T0 + timedelta(days=1), interval="1h")
    assert series["source"] == "rollup" and len(series["buckets"]) == 24
    for hour, bucket in enumerate(series["buckets"]):
        mine = [r for r in rows if r.ts.hour == hour]
        temps = [r.temperature for r in mine]
        assert bucket["start"] == (T0 + timedelta(hours=hour)).isoformat().replace("+00:00", "Z")
        assert bucket["count"] == len(mine) == 6
        assert bucket["temperature"] == {"min": min(temps), "max": max(temps), "avg": pytest.approx(sum(temps) / 6),
                                         "count": 6}
        assert bucket["humidity"] == {"min": None, "max": None, "avg": None, "count": 0}
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:  # enough raw rows that no 5-minute series over them finishes within 1 ms
        conn.execute(text("INSERT INTO ingest_observations (station_id, ts, temperature) "
                          "SELECT 'KSEA', :t0 + make_interval(secs => s), 1.0 FROM generate_series(1, 300000) s "
                          "ON CONFLICT DO NOTHING"), {"t0": T0 + timedelta(days=2)})
    with pytest.raises(queries.QueryTimeout, match="longer than 1 ms"):
        queries.timeseries(engine, "KSEA", start=T0, end=T0 + timedelta(days=10), interval="5m", timeout_ms=1)


def test_writer_plain_insert_first_then_on_conflict_when_a_batch_has_duplicates(services):
    """Clean batches take the plain insert; a duplicate undoes only that attempt and the rollup stays exact."""
    from earthkeep.ingest.models import Obs
    from earthkeep.ingest.writer import ObservationWriter

    engine = services.engine
    w = ObservationWriter(engine)
    pg = engine.dialect.name == "postgresql"  # SQLite always takes its one path
    row = [Obs("KSEA", T0 + timedelta(minutes=i), float(i % 40), 50.0) for i in range(300)]
    assert w.write(row[:100]).inserted == 100 and w._optimistic
    mixed = row[50:150]  # 50 stored already, 50 new
    result = w.write(mixed)
    assert (result.inserted, result.duplicates) == (50, 50) and w._optimistic is not pg
    again = w.write(row[100:200] + row[100:110])  # repeats within the batch and against the table
    assert (again.inserted, again.duplicates) == (50, 60) and w._optimistic is not pg
    assert w.write(row[200:300]).inserted == 100 and w._optimistic  # a clean batch: back to the plain insert
    assert count(engine, "ingest_observations") == 300
    assert rollup_total(engine) == {"n": 300, "temperature_count": 300}
    with engine.connect() as conn:
        per_hour = conn.execute(text("SELECT n, temperature_sum FROM ingest_hourly WHERE station_id = 'KSEA' "
                                     "ORDER BY hour")).all()
    assert [n for n, _ in per_hour] == [60] * 5
    assert [s for _, s in per_hour] == [sum(float(i % 40) for i in range(h * 60, h * 60 + 60)) for h in range(5)]
