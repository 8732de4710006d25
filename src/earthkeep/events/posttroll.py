"""A posttroll publisher on a ZMQ PUB socket: the bus sink that pytroll subscribers read.

Messages are ``posttroll.message.Message(subject, type, data)`` strings, so a
raw ``zmq.SUB`` socket subscribed to ``pytroll://<subject>`` and
``Message.decode`` read them unchanged. The socket binds the configured address
(``tcp://127.0.0.1:29092`` by default; ``tcp://*:29092`` for other hosts) and
never registers with a nameserver.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog

from earthkeep.events.base import Event

log = structlog.get_logger(__name__)


class PosttrollPublisher:
    """Own one posttroll ``Publisher``; ``send`` is thread-safe; ``start``/``stop`` bind and release the port."""

    def __init__(self, address: str, *, name: str = "earthkeep") -> None:
        self.address = address
        self.name = name
        self._pub: Any = None
        self._lock = threading.Lock()
        self.sent = 0

    def start(self) -> PosttrollPublisher:
        from posttroll.publisher import create_publisher_from_dict_config

        with self._lock:
            if self._pub is None:
                pub = create_publisher_from_dict_config(
                    {"address": self.address, "nameservers": False, "name": self.name})
                pub.start()
                self._pub = pub
        log.info("posttroll.started", address=self.address)
        return self

    @property
    def port(self) -> int | None:
        return None if self._pub is None else int(self._pub.port_number)

    def send(self, subject: str, atype: str, data: dict[str, Any]) -> str:
        """Publish one message; returns its wire string."""
        from posttroll.message import Message

        raw = str(Message(subject, atype, data).encode())
        with self._lock:
            if self._pub is None:
                raise RuntimeError("posttroll publisher is not started")
            self._pub.send(raw)
            self.sent += 1
        return raw

    def stop(self) -> None:
        with self._lock:
            pub, self._pub = self._pub, None
        if pub is not None:
            pub.stop()
            log.info("posttroll.stopped", address=self.address)

    def __enter__(self) -> PosttrollPublisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PosttrollSink:
    """Bus subscriber: events whose ``data`` holds ``posttroll`` = (subject, type, data) go out on ZMQ."""

    def __init__(self, publisher: PosttrollPublisher) -> None:
        self.publisher = publisher

    def __call__(self, event: Event) -> None:
        msg = event.data.get("posttroll")
        if not msg:
            return
        subject, atype, data = msg
        self.publisher.send(subject, atype, data)
