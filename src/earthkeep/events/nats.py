"""The NATS adapter: the one connection policy, bus events as JSON, the NATS sink and the NATS bus.

* :func:`connect` is the only place that opens a NATS connection (bus events,
  the ingest collector and consumers; JetStream primitives on top of it are in
  :mod:`earthkeep.events.jetstream`). The connection reconnects for ever
  (every 0.5 s), logs errors, disconnects and reconnects, and buffers up to
  64 MiB of publishes while it is down. A server that is down at start is
  tried again the same way (the call waits); a URL nats-py cannot use raises
  :class:`~earthkeep.errors.SourceUnavailable`. TLS and credentials come with
  the URL as nats-py reads it (``tls://host:4222``, ``nats://user:password@host``,
  ``nats://token@host``).
* A bus event is JSON (:func:`event_json`, read back by :func:`event_from_json`)
  on ``<prefix>.<event type>`` with ``Nats-Msg-Id`` = the event's
  ``data["msg_id"]`` when it has one, so a JetStream stream on those subjects
  stores a re-published event once.
* :class:`NatsSink` publishes bus events (a subscriber of another bus, as the
  granule collector's in-process bus uses it); :class:`NatsBus` is the
  :class:`~earthkeep.events.base.Bus` port over NATS: what any process
  publishes under the prefix reaches the subscribers of every process.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import structlog

from earthkeep.errors import SourceUnavailable
from earthkeep.events.base import Event, Subscriber
from earthkeep.events.memory import Subscribers

log = structlog.get_logger(__name__)
RECONNECT_WAIT_S = 0.5
PENDING_BYTES = 64 * 1024 * 1024
MSG_ID_HEADER = "Nats-Msg-Id"


async def connect(url: str, *, name: str = "earthkeep") -> Any:
    """A NATS connection named ``name`` (shown in the server's monitoring) that reconnects for ever."""
    import nats

    async def _error(exc: Exception) -> None:
        log.warning("nats.error", name=name, error=repr(exc))

    async def _disconnected() -> None:
        log.warning("nats.disconnected", name=name, url=url)

    async def _reconnected() -> None:
        log.info("nats.reconnected", name=name, url=url)

    try:
        return await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=RECONNECT_WAIT_S,
                                  connect_timeout=5, allow_reconnect=True, error_cb=_error,
                                  disconnected_cb=_disconnected, reconnected_cb=_reconnected,
                                  pending_size=PENDING_BYTES)
    except Exception as exc:
        raise SourceUnavailable(f"NATS at {url} is unreachable ({exc!r}); check NATS_URL") from exc


def _default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def event_json(event: Event) -> bytes:
    """The event as JSON bytes (``posttroll`` data included as ``subject``/``type``/``data``)."""
    data = dict(event.data)
    msg = data.pop("posttroll", None)
    body: dict[str, Any] = {"type": event.type, "subject": event.subject, "time": event.time.isoformat(),
                            "trace_id": event.trace_id, "data": data}
    if msg:
        body["posttroll"] = {"subject": msg[0], "type": msg[1], "data": msg[2]}
    return json.dumps(body, default=_default, sort_keys=True).encode()


def event_from_json(raw: bytes) -> Event:
    """The event that :func:`event_json` wrote (values JSON cannot hold come back as their text)."""
    body = json.loads(raw)
    data = dict(body.get("data") or {})
    if body.get("posttroll"):
        msg = body["posttroll"]
        data["posttroll"] = (msg["subject"], msg["type"], msg["data"])
    return Event(body["type"], body["subject"], data, body.get("trace_id"), datetime.fromisoformat(body["time"]))


class NatsSink:
    """Publishes bus events to NATS; connect with :meth:`connect`, close with :meth:`close`.

    Called as a subscriber (``bus.subscribe("*", sink)``); before :meth:`connect`
    and after :meth:`close` it drops events, and a failed publish raises (the
    calling bus logs it).
    """

    name = "earthkeep-events"

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self._nc: Any = None
        self.published = 0

    async def connect(self) -> NatsSink:
        self._nc = await connect(self.url, name=self.name)
        return self

    def subject_for(self, event: Event) -> str:
        return f"{self.prefix}.{event.type.replace('/', '.')}"

    async def __call__(self, event: Event) -> None:
        if self._nc is None:
            return
        msg_id = event.data.get("msg_id")
        headers = {MSG_ID_HEADER: str(msg_id)} if msg_id else None
        await self._nc.publish(self.subject_for(event), event_json(event), headers=headers)
        self.published += 1

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc = self._nc, None
            await nc.drain()


class NatsBus(NatsSink):
    """The bus over NATS: :meth:`publish` sends an event to ``<prefix>.<type>``; subscribers get every
    event published under the prefix, by any process, decoded with :func:`event_from_json`.

    Subscribers run one at a time in arrival order (NATS keeps a publisher's
    order); one that raises is logged and the others still run. Subscribing
    works before and after :meth:`connect`; after a reconnect the client
    subscribes again by itself.
    """

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(url, prefix)
        self._subscribers = Subscribers()
        self._listening: asyncio.Task[None] | None = None

    async def connect(self) -> NatsBus:
        await super().connect()
        if self._subscribers:
            self._listen()
            await self._ready()
        return self

    def subscribe(self, event_type: str, callback: Subscriber) -> None:
        self._subscribers.add(event_type, callback)
        if self._nc is not None:
            self._listen()

    async def publish(self, event: Event) -> None:
        """Send ``event``; a failure (not connected, publish refused) is logged, never raised."""
        try:
            await self._ready()
            if self._nc is None:
                raise SourceUnavailable(f"the NATS bus on {self.prefix!r} is not connected")
            await self(event)
        except Exception as exc:
            log.error("event.publish_failed", type=event.type, bus="nats", error=repr(exc))

    def _listen(self) -> None:
        """Subscribe to the prefix on the connection, once (later, in :meth:`_ready`, outside the event loop)."""
        if self._listening is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._listening = loop.create_task(self._subscribe())

    async def _ready(self) -> None:
        """Wait until the subscription is on the connection (so a publish after subscribe comes back)."""
        if self._listening is None and self._subscribers and self._nc is not None:
            self._listen()
        if self._listening is not None:
            await self._listening

    async def _subscribe(self) -> None:
        await self._nc.subscribe(f"{self.prefix}.>", cb=self._on_msg)
        try:  # the server has the subscription before the next publish goes out
            await self._nc.flush(timeout=5)
        except Exception as exc:  # disconnected: the client subscribes again when it reconnects
            log.warning("event.subscribe_unconfirmed", prefix=self.prefix, error=repr(exc))

    async def _on_msg(self, msg: Any) -> None:
        try:
            event = event_from_json(msg.data)
        except Exception as exc:
            log.warning("event.undecodable", subject=msg.subject, error=repr(exc))
            return
        await self._subscribers.deliver(event)

    async def close(self) -> None:
        await super().close()
        self._listening = None
