"""Posttroll messages on a real ZMQ PUB socket (loopback), read by the README's example subscriber."""

from __future__ import annotations

import asyncio
import json

from granules_support import README_TOPIC, config, emulator, open_services, readme_subscriber
from posttroll.message import Message

from earthkeep.granules.messages import FILE_KEYS
from earthkeep.granules.mirror import mirror
from earthkeep.granules.service import Collector
from earthkeep.testbed.runner import serve_app

STATUS_TOPIC = "pytroll://AVO/viirs/tasks/status"


async def wait_for(subscriber, topic_prefix: str, timeout_s: float = 10.0) -> Message | None:
    """Receive until a message whose subject starts with ``topic_prefix`` (the subscriber has joined)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        msg = await asyncio.to_thread(subscriber.recv, 0.2)
        if msg is not None and ("pytroll:/" + msg.subject).startswith(topic_prefix):
            return msg
    return None


async def file_messages(subscriber, n: int, timeout_s: float = 10.0) -> list[Message]:
    """The next ``n`` file messages (status messages skipped), or fewer after ``timeout_s``."""
    out: list[Message] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(out) < n and loop.time() < deadline:
        msg = await asyncio.to_thread(subscriber.recv, 0.2)
        if msg is not None and msg.type == "file":
            out.append(msg)
    return out


async def test_readme_subscriber_receives_every_file_message_unchanged(tmp_path):
    emu = emulator(tmp_path)
    emu.add_granules(2)
    svc = open_services(f"sqlite:///{tmp_path}/c.db", tmp_path)
    try:
        with serve_app(emu.app()) as base:
            cfg = config(svc, base, uri_base="/viirs/sdr")
            async with Collector(svc, cfg, join_grace_s=0.5) as collector:
                with readme_subscriber(cfg.viirs.publish_address, README_TOPIC) as sub:
                    await asyncio.sleep(0.5)  # the subscriber joins
                    await mirror(svc, cfg, hooks=collector.hooks())
                    msgs = await asyncio.to_thread(sub.recv_all, len(emu.names()))
        assert sorted(m.data["uid"] for m in msgs) == sorted(emu.names())
        for m in msgs:
            assert m.subject == "/AVO/viirs/sdr" and m.type == "file"
            assert sorted(m.data) == sorted(FILE_KEYS)
            assert m.data["uri"] == "/viirs/sdr/" + m.data["uid"]
            assert m.data["platform_name"] == "Suomi-NPP" and m.data["sensor"] == ["viirs"]
            printed = json.loads(sub.printed(m))
            assert printed["start_time"].count(":") == 2 and "+" not in printed["start_time"]
            raw = m.encode()
            assert "127.0.0.1:" not in raw.split(" ", 6)[-1]  # no source URL, no credential in the data
    finally:
        svc.close()


async def test_subscribers_before_and_after_a_publisher_restart_get_every_message(tmp_path):
    emu = emulator(tmp_path)
    emu.add_granules(1)
    svc = open_services(f"sqlite:///{tmp_path}/c.db", tmp_path)
    try:
        with serve_app(emu.app()) as base:
            cfg = config(svc, base)
            with readme_subscriber(cfg.viirs.publish_address, README_TOPIC, STATUS_TOPIC) as before:
                async with Collector(svc, cfg, join_grace_s=0.5) as collector:
                    assert await wait_for(before, STATUS_TOPIC) is not None
                    await mirror(svc, cfg, hooks=collector.hooks())
                    first = await file_messages(before, 3)
                # down: new granules are mirrored and wait in the outbox
                emu.add_granules(1)
                await mirror(svc, cfg)
                with readme_subscriber(cfg.viirs.publish_address, README_TOPIC, STATUS_TOPIC) as after:
                    async with Collector(svc, cfg, join_grace_s=1.0) as collector:
                        emu.add_granules(1)
                        second = await file_messages(before, 3)
                        await mirror(svc, cfg, hooks=collector.hooks())
                        second += await file_messages(before, 3)
                        late = await file_messages(after, 6)
        names = emu.names()
        assert sorted(m.data["uid"] for m in first) == sorted(names[:3])
        assert sorted(m.data["uid"] for m in second) == sorted(names[3:])
        assert sorted(m.data["uid"] for m in late) == sorted(names[3:])
    finally:
        svc.close()


def _slots(snapshot: dict) -> list[dict]:
    return [{k: v for k, v in s.items() if k != "age_s"} for s in snapshot["slots"]]


async def test_the_gatherer_slots_are_saved_for_the_api(tmp_path):
    from fastapi.testclient import TestClient

    from earthkeep.api.app import create_app

    emu = emulator(tmp_path, segments=("GMTCO", "SVM15"))  # SVM16 never arrives: slots stay open
    emu.add_granules(2)
    svc = open_services(f"sqlite:///{tmp_path}/c.db", tmp_path)
    try:
        with TestClient(create_app(services=svc)) as client:
            assert client.get("/granules/gatherer").json()["slots"] == []  # nothing saved yet: said so
            with serve_app(emu.app()) as base:
                cfg = config(svc, base)
                async with Collector(svc, cfg, join_grace_s=0.0) as collector:
                    await mirror(svc, cfg, hooks=collector.hooks())
                    for _ in range(200):  # the saved copy follows the gatherer's state (it may lag under load)
                        shown = client.get("/granules/gatherer").json()
                        expected = collector.gatherer.snapshot()
                        if shown["slots"] and _slots(shown) == _slots(expected):
                            break
                        await asyncio.sleep(0.05)
        assert shown["updated_at"] is not None
        strip = _slots(shown)
        assert strip == _slots(expected)
        btd = [(s["segments"], s["missing"]) for s in strip if s["product"] == "btd"]
        assert btd == [(["GMTCO", "SVM15"], ["SVM16"])] * 2  # two granule times, SVM16 never came
    finally:
        svc.close()
