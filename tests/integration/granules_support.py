"""Shared helpers of the granules integration tests (not a test module)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from posttroll.message import Message

from earthkeep.granules.config import GranuleConfig
from earthkeep.granules.settings import ViirsSettings
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.obstore import ObstoreStore
from earthkeep.testbed.gina import GinaNrt
from earthkeep.testbed.servers import free_port

SEGMENTS = ["GMTCO", "SVM15", "SVM16"]
README_TOPIC = "pytroll://AVO/viirs/sdr"


def open_services(db_url: str, tmp: Path) -> Services:
    """Services on ``db_url`` with a local store and partial files under ``tmp``."""
    transfer = {"work_dir": tmp / "partial", "retries": 3, "timeout_s": 10}
    s = load_settings(catalog={"database_url": db_url}, transfer=transfer)
    return Services.open(s, store=ObstoreStore.local(tmp / "store"))


def config(services: Services, base_url: str = "http://127.0.0.1:9", **viirs: Any) -> GranuleConfig:
    values: dict[str, Any] = {"gina_url": base_url, "segments": SEGMENTS, "platforms": ["snpp"],
                              "publish_address": f"tcp://127.0.0.1:{free_port()}", "retry_base_s": 0.0,
                              "status_interval_s": 0.2, **viirs}
    s = services.settings
    return GranuleConfig(s.granules, ViirsSettings(**values), s.mail)


def emulator(tmp: Path, **kw: Any) -> GinaNrt:
    kw.setdefault("platforms", ("snpp",))
    kw.setdefault("segments", tuple(SEGMENTS))
    kw.setdefault("facilities", ("gilmore",))
    return GinaNrt(tmp / "gina", **kw)


@dataclass
class ReadmeSubscriber:
    """The README's example subscriber: raw zmq.SUB, prefix subscription, Message.decode."""

    socket: Any

    def recv(self, timeout_s: float = 10.0) -> Message | None:
        if not self.socket.poll(int(timeout_s * 1000)):
            return None
        return Message.decode(self.socket.recv())

    def recv_all(self, n: int, timeout_s: float = 15.0) -> list[Message]:
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            msg = self.recv(max(0.05, deadline - time.monotonic()))
            if msg is not None:
                out.append(msg)
        return out

    def printed(self, msg: Message) -> str:
        return json.dumps(msg.data, sort_keys=True, indent=4, default=str)


@contextlib.contextmanager
def readme_subscriber(address: str, *topics: str) -> Iterator[ReadmeSubscriber]:
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    for t in topics or (README_TOPIC,):
        socket.setsockopt_string(zmq.SUBSCRIBE, t)
    socket.connect(address)
    try:
        yield ReadmeSubscriber(socket)
    finally:
        socket.close(linger=0)
        context.term()
