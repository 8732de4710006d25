"""Granule messages also go to NATS for other consumers."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from earthkeep.events.memory import MemoryBus
from earthkeep.events.nats import NatsSink
from earthkeep.granules.publisher import attach_sinks, message_event

pytestmark = pytest.mark.nats


async def test_file_messages_reach_nats_as_json(nats_server):
    got: list[dict] = []
    nc = await nats.connect(nats_server.url)

    async def collect(m) -> None:
        got.append(json.loads(m.data))

    await nc.subscribe("earthkeep.granules.>", cb=collect)
    sink = await NatsSink(nats_server.url, "earthkeep.granules").connect()
    bus = MemoryBus()
    attach_sinks(bus, sink)
    data = {"uid": "SVM16_x.h5", "uri": "/viirs/sdr/SVM16_x.h5", "start_time": "2024-05-01T12:00:00.800000",
            "end_time": "2024-05-01T12:01:25", "proctime": "2024-05-01T12:10:00", "sensor": ["viirs"]}
    try:
        await bus.publish(message_event("/AVO/viirs/sdr", "file", data, "granule-1"))
        await nc.flush()
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
    finally:
        await sink.close()
        await nc.drain()
    assert len(got) == 1
    assert got[0]["type"] == "granule.file" and got[0]["posttroll"]["subject"] == "/AVO/viirs/sdr"
    assert got[0]["data"]["data"]["uid"] == "SVM16_x.h5"
    assert got[0]["posttroll"]["data"]["start_time"] == "2024-05-01T12:00:00.800000"
