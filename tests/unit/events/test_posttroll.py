"""The posttroll sink: messages as pytroll subscribers decode them, on a ZMQ PUB socket bound on loopback."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
import zmq
from posttroll.message import Message

from earthkeep.events.base import Event
from earthkeep.events.posttroll import PosttrollPublisher, PosttrollSink
from earthkeep.testbed.servers import free_port

SUBJECT = "/AVO/viirs/sdr"
DATA = {
    "uid": "SVM16_npp_d20190422_t1828348_e1829590_b38780_c20190422183926285541_cspp_dev.h5",
    "start_time": datetime(2019, 4, 22, 18, 28, 34, 800000),
    "orbit_number": 38780,
    "sensor": ["viirs"],
    "platform_name": "Suomi-NPP",
}


@pytest.fixture
def address() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@contextlib.contextmanager
def subscriber(address: str, topic: str) -> Iterator[zmq.Socket]:
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt_string(zmq.SUBSCRIBE, topic)
    sock.connect(address)
    try:
        yield sock
    finally:
        sock.close(linger=0)
        context.term()


def first_received(sock: zmq.Socket, send) -> Message:
    """Send until the subscriber has joined and received one message (ZMQ drops what is sent before)."""
    for _ in range(100):
        send()
        if sock.poll(100):
            return Message.decode(sock.recv_string())
    raise AssertionError("nothing received on the SUB socket")


def test_the_wire_string_decodes_to_the_same_subject_type_and_data(address):
    with PosttrollPublisher(address) as pub:
        raw = pub.send(SUBJECT, "file", DATA)
    assert raw.startswith("pytroll://AVO/viirs/sdr file ")
    msg = Message.decode(raw)
    assert (msg.subject, msg.type, msg.data) == (SUBJECT, "file", DATA)
    assert isinstance(msg.data["start_time"], datetime)
    assert Message.decode(Message(msg.subject, msg.type, msg.data).encode()).data == DATA  # and back again


def test_a_subscriber_receives_what_the_sink_publishes(address):
    pub = PosttrollPublisher(address, name="earthkeep-test").start()
    sink = PosttrollSink(pub)
    event = Event("granule.stored", "viirs-sdr", {"posttroll": (SUBJECT, "file", DATA)})
    try:
        assert pub.port == int(address.rsplit(":", 1)[1])
        with subscriber(address, "pytroll://AVO/viirs/sdr") as sock:
            msg = first_received(sock, lambda: sink(event))
    finally:
        pub.stop()
    assert (msg.subject, msg.type, msg.data) == (SUBJECT, "file", DATA)
    assert pub.sent >= 1 and pub.port is None


def test_events_without_a_posttroll_message_are_not_sent(address):
    with PosttrollPublisher(address) as pub:
        PosttrollSink(pub)(Event("run.finished", "gfs", {"run_id": "r1"}))
        PosttrollSink(pub)(Event("run.finished", "gfs", {"posttroll": None}))
        assert pub.sent == 0
        pub.send(SUBJECT, "file", DATA)
        assert pub.sent == 1


def test_sending_needs_a_started_publisher(address):
    pub = PosttrollPublisher(address)
    with pytest.raises(RuntimeError, match="posttroll publisher is not started"):
        pub.send(SUBJECT, "file", DATA)
    pub.start().stop()  # started once, then stopped: sending is refused again
    with pytest.raises(RuntimeError, match="not started"):
        PosttrollSink(pub)(Event("granule.stored", "viirs-sdr", {"posttroll": (SUBJECT, "file", DATA)}))
    assert pub.sent == 0


def test_start_is_idempotent_and_stop_releases_the_address(address):
    port = int(address.rsplit(":", 1)[1])
    pub = PosttrollPublisher(address).start()
    assert pub.start() is pub and pub.port == port  # a second start binds nothing more
    pub.stop()
    pub.stop()  # stopping twice is harmless
    assert pub.port is None
    # one stop freed the port (no second socket held it); ZMQ closes the socket on its I/O thread, so the
    # address comes back a moment later: bind again within a few seconds
    deadline = time.monotonic() + 5.0
    while True:
        try:
            again = PosttrollPublisher(address).start()
            break
        except zmq.ZMQError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        assert again.port == port
    finally:
        again.stop()
