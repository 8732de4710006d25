"""JetStream on a connection from :func:`earthkeep.events.nats.connect`: streams, acknowledged publishes, pulls.

* :func:`ensure_stream` creates a stream or updates its configuration, and
  adds durable consumers (adding one that exists with the same configuration
  is a no-op on the server).
* :class:`AckedPublisher` publishes a batch of messages at once, each with a
  reply subject under one inbox, and waits for every JetStream publish ack
  (``{"duplicate": true}`` when the stream already had the ``Nats-Msg-Id``,
  ``{"error": …}`` when it refused the message, status 503 when no stream
  took the subject).
* :class:`PullFetcher` pulls batches for a durable consumer with explicit
  acks through the JetStream API subject, and acks and naks per message.
* :func:`consumer_lag` says how far a durable consumer is behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
import structlog

from earthkeep.waits import wait_event

log = structlog.get_logger(__name__)


async def ensure_stream(nc: Any, stream: Any, *consumers: Any) -> None:
    """Create (or update) the stream of ``nats.js.api.StreamConfig`` ``stream``; add each ``ConsumerConfig``."""
    from nats.js.errors import NotFoundError

    js = nc.jetstream()
    try:
        await js.stream_info(stream.name)
        await js.update_stream(stream)
    except NotFoundError:
        await js.add_stream(stream)
    for consumer in consumers:
        await js.add_consumer(stream.name, consumer)


async def consumer_lag(nc: Any, stream: str, durable: str) -> dict[str, int]:
    """Messages not yet delivered, delivered but not acknowledged, and redelivered, for ``durable``."""
    info = await nc.jetstream().consumer_info(stream, durable)
    return {"pending": int(info.num_pending or 0), "ack_pending": int(info.num_ack_pending or 0),
            "redelivered": int(info.num_redelivered or 0)}


@dataclass
class PubAcks:
    """What JetStream answered for the ``sent`` messages of one :meth:`AckedPublisher.publish`."""

    sent: int
    remaining: int
    duplicates: list[int] = field(default_factory=list)  # indices of messages the stream already had
    errors: list[str] = field(default_factory=list)  # "<code> <description>" of each refusal

    @property
    def confirmed(self) -> int:
        return self.sent - self.remaining

    @property
    def complete(self) -> bool:
        return self.remaining == 0


class _Pending:
    def __init__(self, size: int) -> None:
        self.acks = PubAcks(size, size)
        self.done = asyncio.get_running_loop().create_future()

    def settle(self, data: bytes, index: int) -> None:
        if b'"error"' in data:
            err = orjson.loads(data).get("error", {})
            self.acks.errors.append(f"{err.get('code')} {err.get('description')}")
        elif b'"duplicate"' in data and orjson.loads(data).get("duplicate"):
            self.acks.duplicates.append(index)
        self.acks.remaining -= 1
        if self.acks.remaining == 0 and not self.done.done():
            self.done.set_result(None)


class AckedPublisher:
    """Publishes messages to JetStream and collects their publish acks; :meth:`start` before use."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self._inbox = ""
        self._pending: dict[str, _Pending] = {}
        self._seq = 0

    async def start(self) -> AckedPublisher:
        self._inbox = self.nc.new_inbox()
        await self.nc.subscribe(f"{self._inbox}.>", cb=self._on_ack)
        return self

    async def _on_ack(self, msg: Any) -> None:
        token, _, index = msg.subject[len(self._inbox) + 1:].partition(".")
        pending = self._pending.get(token)
        if pending is not None:
            if msg.headers and msg.headers.get("Status") == "503":  # no responders: the stream is gone
                pending.acks.errors.append("503 no stream responded")
                pending.settle(b"{}", int(index))
            else:
                pending.settle(msg.data, int(index))

    async def publish(self, messages: Sequence[tuple[str, bytes, dict[str, str]]], timeout_s: float) -> PubAcks:
        """Send every (subject, body, headers) message, then wait up to ``timeout_s`` for their acks.

        Returns the acks so far (``complete`` is false after the timeout); a
        failed publish raises the client's error.
        """
        self._seq += 1
        token = f"b{self._seq}"
        pending = self._pending[token] = _Pending(len(messages))
        reply = f"{self._inbox}.{token}."
        try:
            for i, (subject, body, headers) in enumerate(messages):
                await self.nc.publish(subject, body, reply=f"{reply}{i}", headers=headers)
            if messages:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pending.done), timeout_s)
        finally:
            self._pending.pop(token, None)
        return pending.acks


class PullFetcher:
    """Pulls about ``records`` records' worth of messages at a time for a durable consumer; acks/naks them.

    ``messages`` is the first pull's size; :meth:`observe` sizes the next ones
    from the records per message actually seen (a stream may hold messages of
    one record and of many).
    """

    def __init__(self, nc: Any, stream: str, durable: str, *, records: int, messages: int, wait_s: float,
                 linger_s: float) -> None:
        self.nc = nc
        self.records, self.wait_s, self.linger_s = records, wait_s, linger_s
        self.messages = messages  # per pull; adapted by observe()
        self._buf: list[Any] = []
        self._wake = asyncio.Event()
        self._polling = False
        self._inbox = ""
        self._api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"

    async def start(self) -> PullFetcher:
        self._inbox = self.nc.new_inbox()
        await self.nc.subscribe(self._inbox, cb=self._on_msg)
        return self

    async def _on_msg(self, msg: Any) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None and msg.reply:
            self._buf.append(msg)
            if len(self._buf) >= self.messages:
                self._wake.set()
            elif self._polling and len(self._buf) == 1:  # a long poll's first message: collect briefly, then go
                asyncio.get_running_loop().call_later(self.linger_s, self._wake.set)
        elif status in ("404", "408", "409"):
            if status == "409":
                log.warning("jetstream.pull_refused", description=msg.headers.get("Description"))
            self._wake.set()

    async def fetch(self) -> list[Any]:
        """The next batch (possibly empty after ``wait_s`` without messages).

        First what the stream holds right now (``no_wait``: the server sends what
        it has, then a 404, so the tail of a burst is handled at once); when
        that is nothing, a long poll that returns ``linger_s`` after its first
        message arrives (or when the batch is full, or at ``wait_s``). A long
        poll left open on the server may still deliver messages: they wait in
        the buffer for the next call, so at most two batches are in hand.
        """
        want = self.messages - len(self._buf)
        if want > 0:
            await self._pull({"batch": want, "no_wait": True}, self.wait_s + 1.0, polling=False)
            if not self._buf:
                await self._pull({"batch": want, "expires": int(self.wait_s * 1e9)}, self.wait_s + 1.0,
                                 polling=True)
        msgs, self._buf = self._buf, []
        return msgs

    async def _pull(self, request: dict[str, Any], timeout: float, *, polling: bool) -> None:
        self._wake.clear()
        self._polling = polling
        try:
            await self.nc.publish(self._api, orjson.dumps(request), reply=self._inbox)
            await wait_event(self._wake, timeout)
        except Exception as exc:  # disconnected: the client reconnects; try again shortly
            log.warning("jetstream.pull_failed", error=repr(exc))
            await asyncio.sleep(min(self.wait_s, 0.5))
        finally:
            self._polling = False

    def observe(self, messages: int, records: int) -> None:
        """Size the next pulls from a batch of ``messages`` that carried ``records``."""
        if messages > 0 and records > 0:
            per_message = records / messages
            self.messages = max(1, min(self.records, round(self.records / per_message)))

    async def ack(self, msgs: Sequence[Any]) -> None:
        for m in msgs:
            await self.nc.publish(m.reply, b"+ACK")

    async def nak(self, msgs: Sequence[Any], delay_s: float) -> None:
        body = b'-NAK {"delay": %d}' % int(timedelta(seconds=delay_s).total_seconds() * 1e9)
        for m in msgs:
            await self.nc.publish(m.reply, body)
