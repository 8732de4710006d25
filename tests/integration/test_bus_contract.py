"""The Bus contract, run against every adapter: in-process (MemoryBus) and NATS (NatsBus on a real nats-server).

The NATS adapter delivers asynchronously, so each test ends its publishing
with :meth:`Probe.settle`: a marker event that every subscriber connection
receives after the events published before it (NATS keeps one publisher's
order), so what was not delivered by then is not going to be.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from earthkeep.events.base import Bus, Event
from earthkeep.events.jetstream import PullFetcher, ensure_stream
from earthkeep.events.memory import MemoryBus
from earthkeep.events.nats import NatsBus, event_from_json
from earthkeep.granules.publisher import message_event
from earthkeep.testbed.servers import NatsServer

PROBE = "probe.settle"
WAIT_S = 10.0


class Probe:
    """Publishes a marker on ``bus`` and waits until its own subscriber has it."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self._waiting: dict[str, asyncio.Event] = {}
        bus.subscribe(PROBE, self._seen)

    def _seen(self, event: Event) -> None:
        if event.subject in self._waiting:
            self._waiting[event.subject].set()

    async def settle(self, via: Any = None) -> None:
        """Publish a marker (on ``via``, default this bus) and wait until this bus delivered it."""
        token = uuid.uuid4().hex
        seen = self._waiting[token] = asyncio.Event()
        await (via or self.bus).publish(Event(PROBE, token))
        await asyncio.wait_for(seen.wait(), WAIT_S)


class Recorder:
    """A subscriber that keeps what it got (not the probe's markers)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        if event.type != PROBE:
            self.events.append(event)

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]


async def _nats_bus(url: str) -> NatsBus:
    return await NatsBus(url, f"contract.{uuid.uuid4().hex[:12]}").connect()


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def bus(request: pytest.FixtureRequest):
    """The bus port in-process, and over NATS (a fresh subject prefix on the session's server)."""
    if request.param == "memory":
        yield MemoryBus()
        return
    server: NatsServer = request.getfixturevalue("nats_server")
    nb = await _nats_bus(server.url)
    try:
        yield nb
    finally:
        await nb.close()


@pytest.fixture
def probe(bus) -> Probe:
    return Probe(bus)


def event(etype: str, n: int = 0, **data: Any) -> Event:
    return Event(etype, "contract", {"n": n, **data})


# ------------------------------------------------------------------ every adapter


async def test_subscribers_get_their_type_and_star_gets_every_type(bus, probe):
    items, runs, every = Recorder(), Recorder(), Recorder()
    bus.subscribe("item.created", items)
    bus.subscribe("run.finished", runs)
    bus.subscribe("*", every)
    assert isinstance(bus, Bus)
    for etype in ("item.created", "run.finished", "granule.file"):
        await bus.publish(event(etype))
    await probe.settle()
    assert items.types == ["item.created"]
    assert runs.types == ["run.finished"]
    assert every.types == ["item.created", "run.finished", "granule.file"]


async def test_a_subscriber_of_two_types_gets_both_and_nothing_else(bus, probe):
    got = Recorder()
    bus.subscribe("item.created", got)
    bus.subscribe("item.deleted", got)
    for etype in ("item.created", "run.finished", "item.deleted"):
        await bus.publish(event(etype))
    await probe.settle()
    assert got.types == ["item.created", "item.deleted"]


async def test_events_of_one_type_arrive_in_publishing_order(bus, probe):
    got: list[int] = []

    async def slow(e: Event) -> None:  # yields between events: order must not depend on the subscriber's speed
        await asyncio.sleep(0)
        got.append(e.data["n"])

    bus.subscribe("item.created", slow)
    for n in range(300):
        await bus.publish(event("item.created", n))
    await probe.settle()
    assert got == list(range(300))


async def test_a_failing_subscriber_is_logged_and_the_others_still_get_the_event(bus, probe):
    good = Recorder()

    def broken(e: Event) -> None:
        raise RuntimeError("subscriber bug")

    async def broken_async(e: Event) -> None:
        raise ValueError("async subscriber bug")

    bus.subscribe("item.created", broken)
    bus.subscribe("item.created", broken_async)
    bus.subscribe("item.created", good)
    with structlog.testing.capture_logs() as logs:
        await bus.publish(event("item.created", 1))  # does not raise
        await bus.publish(event("item.created", 2))
        await probe.settle()
    assert [e.data["n"] for e in good.events] == [1, 2]
    failures = [entry for entry in logs if entry["event"] == "event.subscriber_failed"]
    assert len(failures) == 4 and {f["type"] for f in failures} == {"item.created"}
    assert any("subscriber bug" in f["error"] for f in failures)
    assert any("async subscriber bug" in f["error"] for f in failures)


async def test_time_trace_id_and_data_survive_the_trip(bus, probe):
    got = Recorder()
    bus.subscribe("*", got)
    sent = [
        Event("item.created", "gfs/2024-05-01", {"item_id": "a1", "size": 3, "ok": True, "ratio": 0.25,
                                                 "nested": {"list": [1, "two", None]}, "key": "a/b.grib2"},
              trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
              time=datetime(2024, 5, 1, 12, 0, 1, 123456, tzinfo=UTC)),
        Event("run.finished", "nightlights", {}, trace_id=None),
    ]
    for e in sent:
        await bus.publish(e)
    await probe.settle()
    assert got.events == sent


async def test_a_posttroll_granule_message_keeps_its_subject_type_and_data(bus, probe):
    got = Recorder()
    bus.subscribe("granule.file", got)
    data = {"uid": "SVM16_x.h5", "uri": "/viirs/sdr/SVM16_x.h5", "sensor": ["viirs"], "orbit_number": 1}
    await bus.publish(message_event("/AVO/viirs/sdr", "file", data, "granule-7"))
    await probe.settle()
    [e] = got.events
    assert e.type == "granule.file" and e.subject == "/AVO/viirs/sdr"
    assert e.data["data"] == data and e.data["msg_id"] == "granule-7"
    assert tuple(e.data["posttroll"]) == ("/AVO/viirs/sdr", "file", data)


async def test_publishing_with_no_subscriber_is_fine(bus, probe):
    await bus.publish(event("nobody.listens"))
    await probe.settle()


# ------------------------------------------------------------------ NATS only

@pytest.fixture
async def nats_bus(nats_server):
    nb = await _nats_bus(nats_server.url)
    try:
        yield nb
    finally:
        await nb.close()


@pytest.mark.nats
async def test_two_processes_on_one_prefix_see_each_others_events(nats_server, nats_bus):
    other = await NatsBus(nats_server.url, nats_bus.prefix).connect()
    try:
        got, probe = Recorder(), Probe(other)
        other.subscribe("item.created", got)
        await probe.settle()  # other's subscription is on the server
        await nats_bus.publish(event("item.created", 5))
        await probe.settle(via=nats_bus)
        assert [e.data["n"] for e in got.events] == [5]
    finally:
        await other.close()


@pytest.mark.nats
async def test_jetstream_keeps_a_republished_event_once(nats_server, nats_bus):
    """``Nats-Msg-Id`` = the event's ``msg_id``: a stream on the bus's subjects stores a repeat once.

    Core subscribers see every publish (JetStream dedupes what it stores, not the core traffic).
    """
    from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

    from earthkeep.events.nats import connect

    name = "BUS_" + nats_bus.prefix.replace(".", "_")
    nc = await connect(nats_server.url, name="contract-reader")
    try:
        await ensure_stream(nc, StreamConfig(name=name, subjects=[f"{nats_bus.prefix}.>"], duplicate_window=60),
                            ConsumerConfig(durable_name="reader", ack_policy=AckPolicy.EXPLICIT))
        core, probe = Recorder(), Probe(nats_bus)
        nats_bus.subscribe("granule.file", core)
        first = message_event("/AVO/viirs/sdr", "file", {"uid": "a.h5"}, "granule-1")
        again = message_event("/AVO/viirs/sdr", "file", {"uid": "a.h5"}, "granule-1")  # a restart resends it
        other = message_event("/AVO/viirs/sdr", "file", {"uid": "b.h5"}, "granule-2")
        for e in (first, again, other):
            await nats_bus.publish(e)
        await probe.settle()
        assert [e.data["data"]["uid"] for e in core.events] == ["a.h5", "a.h5", "b.h5"]

        fetcher = await PullFetcher(nc, name, "reader", records=10, messages=10, wait_s=0.5, linger_s=0).start()
        msgs = await fetcher.fetch()
        await fetcher.ack(msgs)
        stored = [event_from_json(m.data) for m in msgs if not m.subject.endswith(PROBE)]
        assert [(e.data["msg_id"], e.data["data"]["uid"]) for e in stored] == [("granule-1", "a.h5"),
                                                                                ("granule-2", "b.h5")]
        assert [m.headers["Nats-Msg-Id"] for m in msgs if not m.subject.endswith(PROBE)] == ["granule-1",
                                                                                             "granule-2"]
    finally:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(name)
        await nc.drain()


@pytest.mark.nats
async def test_the_bus_reconnects_after_the_server_restarts():
    with NatsServer() as server:
        nb = await _nats_bus(server.url)
        try:
            got, probe = Recorder(), Probe(nb)
            nb.subscribe("item.created", got)
            await nb.publish(event("item.created", 1))
            await probe.settle()
            with structlog.testing.capture_logs() as logs:
                await asyncio.to_thread(server.restart)
                for _ in range(int(WAIT_S / 0.05)):
                    if any(entry["event"] == "nats.reconnected" for entry in logs):
                        break
                    await asyncio.sleep(0.05)
                await nb.publish(event("item.created", 2))
                await probe.settle()
            assert [e.data["n"] for e in got.events] == [1, 2]
            names = [entry["event"] for entry in logs]
            assert "nats.disconnected" in names and "nats.reconnected" in names
        finally:
            await nb.close()
