"""Bus events as JSON on NATS (the format other consumers read), and the NATS bus without a server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import PurePosixPath

import structlog

from earthkeep.events.base import Event
from earthkeep.events.nats import NatsBus, NatsSink, event_from_json, event_json
from earthkeep.granules.publisher import message_event


def test_an_event_reads_back_equal():
    e = Event("item.created", "gfs", {"item_id": "x", "n": 2, "tags": ["a", None]}, "trace-1",
              datetime(2024, 5, 1, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=-8))))
    assert event_from_json(event_json(e)) == e


def test_the_wire_format_is_unchanged():
    e = message_event("/AVO/viirs/sdr", "file", {"uid": "a.h5", "start_time": "2024-05-01T12:00:00.800000"},
                      "granule-3")
    e = Event(e.type, e.subject, e.data, None, datetime(2024, 5, 1, tzinfo=UTC))
    body = json.loads(event_json(e))
    assert set(body) == {"type", "subject", "time", "trace_id", "data", "posttroll"}
    assert body["time"] == "2024-05-01T00:00:00+00:00" and body["trace_id"] is None
    assert body["posttroll"] == {"subject": "/AVO/viirs/sdr", "type": "file",
                                 "data": {"uid": "a.h5", "start_time": "2024-05-01T12:00:00.800000"}}
    assert "posttroll" not in body["data"] and body["data"]["msg_id"] == "granule-3"
    back = event_from_json(event_json(e))
    assert back.data["posttroll"] == ("/AVO/viirs/sdr", "file", body["posttroll"]["data"])


def test_values_json_cannot_hold_come_back_as_text():
    t = datetime(2024, 1, 2, tzinfo=UTC)
    back = event_from_json(event_json(Event("x", "y", {"at": t, "path": PurePosixPath("/a/b")})))
    assert back.data == {"at": t.isoformat(), "path": "/a/b"}


def test_subjects_are_the_prefix_and_the_type():
    sink = NatsSink("nats://127.0.0.1:1", "earthkeep.granules")
    assert sink.subject_for(Event("granule.file", "s")) == "earthkeep.granules.granule.file"
    assert sink.subject_for(Event("a/b", "s")) == "earthkeep.granules.a.b"


async def test_a_sink_that_is_not_connected_drops_events():
    sink = NatsSink("nats://127.0.0.1:1", "p")
    await sink(Event("a", "b"))
    assert sink.published == 0


async def test_publishing_on_a_bus_that_is_not_connected_is_logged_not_raised():
    bus = NatsBus("nats://127.0.0.1:1", "p")
    bus.subscribe("*", lambda e: None)  # outside a connection: kept for connect()
    with structlog.testing.capture_logs() as logs:
        await bus.publish(Event("item.created", "b"))
    [entry] = [x for x in logs if x["event"] == "event.publish_failed"]
    assert entry["type"] == "item.created" and "not connected" in entry["error"]
