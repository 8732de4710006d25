"""Faults: a consumer SIGKILLed mid-stream, PostgreSQL stopped and started, NATS restarted.

Each time the database must end up holding exactly the distinct valid
observations that were sent (no loss, no duplicates) and the rollup must count
each of them once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from ingest_support import count, rollup_total, stored_keys

from earthkeep.catalog.db import create_db_engine
from earthkeep.catalog.migrate import upgrade
from earthkeep.errors import SourceUnavailable
from earthkeep.ingest.collector import Collector, Parsed
from earthkeep.ingest.consumer import run_consumers
from earthkeep.ingest.jetstream import JetStreamBroker
from earthkeep.ingest.settings import IngestSettings
from earthkeep.ingest.simulator import Simulator, make_stations
from earthkeep.ingest.stations import StationDirectory, upsert_stations
from earthkeep.testbed.servers import NatsServer

T0 = datetime(2024, 7, 1, tzinfo=UTC)


def settings_for(nats_url: str, name: str, mode: str = "record") -> IngestSettings:
    return IngestSettings(broker="nats", nats_url=nats_url, stream=f"F_{name}", subject_prefix=f"f.{name}",
                          durable=f"d_{name}", fetch_batch=200, fetch_wait_s=0.2, ack_wait_s=2,
                          retry_max_s=1.0, publish_timeout_s=3, stats_every_s=0.5, message_mode=mode,
                          batch_message_records=100)


@pytest.fixture
def engine(pg_url):
    eng = create_db_engine(pg_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def simulation(engine, n: int, seed: int = 3) -> tuple[Simulator, list[dict]]:
    sim = Simulator(make_stations(6, seed=seed), T0, step_s=30, seed=seed, duplicate_rate=0.1,
                    late_rate=0.05, invalid_rate=0.03)
    with engine.begin() as conn:
        from sqlalchemy.orm import Session

        with Session(conn) as s:
            upsert_stations(s, sim.stations)
            s.commit()
    return sim, sim.batch(n) + sim.flush()


async def send_all(collector: Collector, records: list[dict], chunk: int = 500) -> None:
    """Post like a client: a batch the broker could not confirm is sent again."""
    for i in range(0, len(records), chunk):
        for _attempt in range(60):
            try:
                await collector.submit(Parsed(records[i:i + chunk]), trace_id=f"fault-{i}")
                break
            except SourceUnavailable:
                await asyncio.sleep(0.5)
        else:
            raise AssertionError("the collector never accepted a batch")


async def wait_rows(engine, n: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(count, engine, "ingest_observations") >= n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"only {count(engine, 'ingest_observations')} of {n} rows after {timeout} s")


def assert_exact(engine, sim: Simulator) -> None:
    keys = stored_keys(engine)
    assert len(keys) == len(set(keys)) == len(sim.expected)
    assert set(keys) == sim.expected
    assert rollup_total(engine)["n"] == len(sim.expected)


async def test_consumer_sigkilled_mid_stream_then_restarted(engine, pg_url, nats_server, tmp_path):
    s = settings_for(nats_server.url, "kill")
    sim, records = simulation(engine, 30_000)
    broker = await JetStreamBroker(s).start()
    try:
        await send_all(Collector(broker, StationDirectory(engine), engine), records)
    finally:
        await broker.close()
    env = {**os.environ, "DATABASE_URL": pg_url, "NATS_URL": nats_server.url, "EARTHKEEP_INGEST_BROKER": "nats",
           "EARTHKEEP_INGEST_STREAM": s.stream, "EARTHKEEP_INGEST_SUBJECT": s.subject_prefix,
           "EARTHKEEP_INGEST_DURABLE": s.durable, "EARTHKEEP_INGEST_FETCH_BATCH": "200",
           "EARTHKEEP_INGEST_ACK_WAIT": "2", "LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "earthkeep.cli.weather", "consume"]
    first = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while count(engine, "ingest_observations") < 2000:
            assert time.monotonic() < deadline and first.poll() is None, "the first consumer made no progress"
            await asyncio.sleep(0.02)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert count(engine, "ingest_observations") < len(sim.expected)  # it really died mid-stream
    second = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_rows(engine, len(sim.expected))
        await asyncio.sleep(s.ack_wait_s + 1)  # let any redelivery of the killed batch arrive and be dropped
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert_exact(engine, sim)


@pytest.mark.parametrize("mode", ["record", "batch"])
async def test_postgres_stopped_and_started_while_consuming(engine, postgres_server, nats_server, mode):
    s = settings_for(nats_server.url, f"pgstop_{mode}", mode)
    sim, records = simulation(engine, 12_000, seed=5)
    half = len(records) // 2
    stop = asyncio.Event()
    consumers = asyncio.create_task(run_consumers(engine, s, stop, count=2))
    broker = await JetStreamBroker(s).start()
    collector = Collector(broker, StationDirectory(engine), engine)
    try:
        await send_all(collector, records[:half])
        await wait_rows(engine, 1)
        await asyncio.to_thread(postgres_server.stop)
        try:
            await send_all(collector, records[half:])  # the broker keeps accepting while the database is down
            await asyncio.sleep(3)
        finally:
            await asyncio.to_thread(postgres_server.start)
        await wait_rows(engine, len(sim.expected))
        await asyncio.sleep(s.ack_wait_s + 1)
    finally:
        stop.set()
        stats = await asyncio.wait_for(consumers, 30)
        await broker.close()
    assert sum(st["failed_batches"] for st in stats) > 0  # the outage was felt and survived
    assert_exact(engine, sim)


async def test_nats_restarted_mid_stream(engine):
    sim, records = simulation(engine, 12_000, seed=7)
    half = len(records) // 2
    with NatsServer() as nats:
        s = settings_for(nats.url, "restart")
        stop = asyncio.Event()
        consumers = asyncio.create_task(run_consumers(engine, s, stop))
        broker = await JetStreamBroker(s).start()
        collector = Collector(broker, StationDirectory(engine), engine)
        try:
            await send_all(collector, records[:half])
            await wait_rows(engine, 1)
            await asyncio.to_thread(nats.restart)
            await send_all(collector, records[half:])
            await wait_rows(engine, len(sim.expected))
            await asyncio.sleep(s.ack_wait_s + 1)
        finally:
            stop.set()
            await asyncio.wait_for(consumers, 30)
            await broker.close()
    assert_exact(engine, sim)


async def test_consumers_of_one_process_drop_repeats_in_memory_even_across_their_batches(engine, nats_server):
    """Each message repeats rows of the one before, which another consumer is writing or has written."""
    from datetime import timedelta

    from earthkeep.ingest.models import Obs

    s = settings_for(nats_server.url, "shared", "batch").model_copy(update={"fetch_batch": 100})
    rows = [Obs("S1", T0 + timedelta(minutes=i), float(i % 50)) for i in range(3000)]
    broker = await JetStreamBroker(s).start()
    try:
        for i in range(0, len(rows), 80):  # 30 messages of 100 rows; each repeats the last 20 of the one before
            await broker.publish(rows[max(0, i - 20):i + 80], trace_id=None)
    finally:
        await broker.close()
    stop = asyncio.Event()
    consumers = asyncio.create_task(run_consumers(engine, s, stop, count=3))
    try:
        await wait_rows(engine, len(rows))
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        stats = await asyncio.wait_for(consumers, 30)
    assert sum(st["dropped_db"] for st in stats) == 0  # no repeat reached the database
    assert sum(st["dropped_memory"] for st in stats) == 20 * 37 and sum(st["inserted"] for st in stats) == 3000
    assert count(engine, "ingest_observations") == 3000 and rollup_total(engine)["n"] == 3000


async def test_a_message_redelivered_while_its_first_write_hangs_and_fails_is_not_lost(engine, nats_server):
    """The redelivery finds the records in flight and drops them; it must not ack before the first write ends.

    The first write of the message takes longer than ack_wait (JetStream redelivers it to the second
    consumer of the process), then fails. The second consumer waited for it, nak'ed, and the third
    delivery writes the rows.
    """
    from datetime import timedelta

    from earthkeep.events.nats import connect
    from earthkeep.ingest.consumer import ObservationConsumer
    from earthkeep.ingest.dedupe import DedupeCache
    from earthkeep.ingest.jetstream import ensure_stream, observation_fetcher
    from earthkeep.ingest.models import Obs
    from earthkeep.ingest.writer import ObservationWriter

    class HangsThenFails(ObservationWriter):
        calls = 0

        def write(self, rows):
            HangsThenFails.calls += 1
            if HangsThenFails.calls == 1:
                time.sleep(2.5)  # past ack_wait (1 s): JetStream hands the message to the other consumer
                raise SourceUnavailable("observations database: simulated hang, then failure")
            return super().write(rows)

    s = settings_for(nats_server.url, "hang", "batch").model_copy(
        update={"fetch_batch": 100, "ack_wait_s": 1.0, "retry_max_s": 0.2})
    rows = [Obs("S1", T0 + timedelta(minutes=i), float(i % 30)) for i in range(100)]
    broker = await JetStreamBroker(s).start()
    try:
        await broker.publish(rows, trace_id="hang")
    finally:
        await broker.close()
    nc = await connect(s.nats_url)
    stop = asyncio.Event()
    try:
        await ensure_stream(nc, s)
        dedupe = DedupeCache(s.dedupe_size, s.dedupe_age_s)
        consumers = [ObservationConsumer(await observation_fetcher(nc, s).start(), HangsThenFails(engine), engine, s,
                                         dedupe=dedupe) for _ in range(2)]
        runs = asyncio.gather(*(c.run(stop) for c in consumers))
        try:
            await wait_rows(engine, len(rows), timeout=30)
            await asyncio.sleep(2.0)  # later deliveries, if any, are dropped
        finally:
            stop.set()
            await asyncio.wait_for(runs, 30)
    finally:
        await nc.drain()
    assert HangsThenFails.calls >= 3  # the hanging write, the redelivery's empty one, the one that stored them
    assert count(engine, "ingest_observations") == 100 and rollup_total(engine)["n"] == 100
    assert sum(c.stats.failed_batches for c in consumers) == 1
