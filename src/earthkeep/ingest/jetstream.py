"""NATS JetStream adapter: the stream, the publishing broker, and a pull fetcher for consumers.

* One stream (file storage, work-queue retention, ``discard new`` when full so
  a backlog pushes back on the collector instead of losing data) on subjects
  ``<subject_prefix>.<station_id>``.
* :class:`JetStreamBroker` publishes the request's observations and waits for
  every publish ack before returning. With ``message_mode = "batch"`` (the
  default) it sends one message per chunk of ``batch_message_records``
  observations, in the rows format of :mod:`earthkeep.ingest.messages`
  (``Nats-Msg-Id`` = the chunk's SHA-256, so a resent request is dropped by
  the server; repeats of single records are dropped by the consumer's cache
  and the database's primary key). With ``"record"`` it sends one message per
  observation, the record's JSON as the client sent it, with ``Nats-Msg-Id`` =
  station and timestamp, so the server also drops single repeats, at about
  three times the CPU per observation (see docs/ingest.md). The request's
  trace id travels in the ``Earthkeep-Trace-Id`` header. Consumers read both.
* :class:`PullFetcher` pulls batches for a durable consumer (explicit acks)
  through the JetStream API subject; acks and naks are sent per message.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import orjson
import structlog

from earthkeep.errors import SourceUnavailable
from earthkeep.ingest.broker import PublishResult
from earthkeep.ingest.messages import FORMAT_HEADER, ROWS_FORMAT, encode_rows
from earthkeep.ingest.models import Obs
from earthkeep.ingest.settings import IngestSettings
from earthkeep.waits import wait_event

log = structlog.get_logger(__name__)
TRACE_HEADER = "Earthkeep-Trace-Id"


async def connect(url: str, *, name: str = "earthkeep-ingest") -> Any:
    """A NATS connection that reconnects for ever (raise :class:`SourceUnavailable` if it cannot start)."""
    import nats

    async def _error(exc: Exception) -> None:
        log.warning("nats.error", error=repr(exc))

    async def _disconnected() -> None:
        log.warning("nats.disconnected", url=url)

    async def _reconnected() -> None:
        log.info("nats.reconnected", url=url)

    try:
        return await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                  connect_timeout=5, allow_reconnect=True, error_cb=_error,
                                  disconnected_cb=_disconnected, reconnected_cb=_reconnected,
                                  pending_size=64 * 1024 * 1024)
    except Exception as exc:
        raise SourceUnavailable(f"NATS at {url} is unreachable ({exc!r}); check NATS_URL") from exc


async def ensure_stream(nc: Any, s: IngestSettings) -> None:
    """Create (or update) the observations stream and the durable pull consumer."""
    from nats.js.api import (
        AckPolicy,
        ConsumerConfig,
        DeliverPolicy,
        DiscardPolicy,
        RetentionPolicy,
        StorageType,
        StreamConfig,
    )
    from nats.js.errors import NotFoundError

    js = nc.jetstream()
    stream = StreamConfig(name=s.stream, subjects=[f"{s.subject_prefix}.>"], storage=StorageType.FILE,
                          retention=RetentionPolicy.WORK_QUEUE, discard=DiscardPolicy.NEW,
                          max_bytes=s.stream_max_bytes, duplicate_window=s.duplicate_window_s)
    try:
        await js.stream_info(s.stream)
        await js.update_stream(stream)
    except NotFoundError:
        await js.add_stream(stream)
    consumer = ConsumerConfig(durable_name=s.durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=s.ack_wait_s,
                              max_ack_pending=s.max_ack_pending, max_deliver=s.max_deliver,
                              deliver_policy=DeliverPolicy.ALL, filter_subject=f"{s.subject_prefix}.>")
    await js.add_consumer(s.stream, consumer)


def encode(row: Obs) -> bytes:
    """The message body: the observation as the API's JSON record."""
    return orjson.dumps(row.to_json())


class _Batch:
    def __init__(self, size: int, weights: list[int]) -> None:
        self.remaining = size
        self.weights = weights
        self.duplicates = 0
        self.errors: list[str] = []
        self.done = asyncio.get_running_loop().create_future()

    def settle(self, data: bytes, index: int) -> None:
        if b'"error"' in data:
            err = orjson.loads(data).get("error", {})
            self.errors.append(f"{err.get('code')} {err.get('description')}")
        elif b'"duplicate"' in data and orjson.loads(data).get("duplicate"):
            self.duplicates += self.weights[index] if self.weights else 1
        self.remaining -= 1
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)


class JetStreamBroker:
    """Publishes observations to JetStream and returns once every message is acknowledged."""

    mode = "nats"

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.nc: Any = None
        self._inbox = ""
        self._batches: dict[str, _Batch] = {}
        self._seq = 0

    @property
    def forwards_texts(self) -> bool:
        """True when :meth:`publish` can use the records' JSON text as the client sent it."""
        return self.settings.message_mode == "record"

    async def start(self) -> JetStreamBroker:
        self.nc = await connect(self.settings.nats_url, name="earthkeep-collector")
        try:
            await ensure_stream(self.nc, self.settings)
        except Exception as exc:
            await self.nc.close()
            raise SourceUnavailable(f"JetStream stream {self.settings.stream!r} not available: {exc!r}") from exc
        self._inbox = self.nc.new_inbox()
        await self.nc.subscribe(f"{self._inbox}.>", cb=self._on_ack)
        return self

    async def _on_ack(self, msg: Any) -> None:
        token, _, index = msg.subject[len(self._inbox) + 1:].partition(".")
        batch = self._batches.get(token)
        if batch is not None:
            if msg.headers and msg.headers.get("Status") == "503":  # no responders: the stream is gone
                batch.errors.append("503 no stream responded")
                batch.settle(b"{}", int(index))
            else:
                batch.settle(msg.data, int(index))

    def _messages(self, rows: Sequence[Obs], trace: str,
                  lines: Sequence[bytes] | None) -> list[tuple[str, bytes, dict[str, str], int]]:
        """(subject, body, headers, records) of each message for ``rows``.

        In record mode a body is the record's JSON as the client sent it when
        ``lines`` has it (validated by the collector; the consumer decodes it to
        the same row), else the row encoded again. In batch mode a body is a
        chunk of rows (:func:`~earthkeep.ingest.messages.encode_rows`).
        """
        prefix = self.settings.subject_prefix
        if self.settings.message_mode == "record":
            texts = lines if lines is not None and len(lines) == len(rows) else [encode(r) for r in rows]
            return [(f"{prefix}.{r.station_id}", text, {"Nats-Msg-Id": r.key, TRACE_HEADER: trace}, 1)
                    for r, text in zip(rows, texts, strict=True)]
        size = self.settings.batch_message_records
        out = []
        for i in range(0, len(rows), size):
            chunk = rows[i:i + size]
            body = encode_rows(chunk)
            headers = {"Nats-Msg-Id": "sha256:" + hashlib.sha256(body).hexdigest(), TRACE_HEADER: trace,
                       FORMAT_HEADER: ROWS_FORMAT}
            out.append((f"{prefix}.batch", body, headers, len(chunk)))
        return out

    async def publish(self, rows: Sequence[Obs], *, trace_id: str | None,
                      lines: Sequence[bytes] | None = None) -> PublishResult:
        if not rows:
            return PublishResult(0)
        self._seq += 1
        token = f"b{self._seq}"
        messages = self._messages(rows, trace_id or "", lines)
        weights = [] if self.settings.message_mode == "record" else [m[3] for m in messages]
        batch = self._batches[token] = _Batch(len(messages), weights)
        reply = f"{self._inbox}.{token}."
        try:
            for i, (subject, body, headers, _) in enumerate(messages):
                await self.nc.publish(subject, body, reply=f"{reply}{i}", headers=headers)
            await asyncio.wait_for(asyncio.shield(batch.done), self.settings.publish_timeout_s)
        except TimeoutError as exc:
            raise SourceUnavailable(
                f"JetStream confirmed {len(messages) - batch.remaining} of {len(messages)} messages within "
                f"{self.settings.publish_timeout_s:.0f} s; send the batch again (repeats are dropped)") from exc
        except Exception as exc:
            raise SourceUnavailable(f"publishing to NATS failed ({exc!r}); send the batch again") from exc
        finally:
            self._batches.pop(token, None)
        if batch.errors:
            raise SourceUnavailable(f"JetStream refused {len(batch.errors)} of {len(messages)} messages "
                                    f"({batch.errors[0]}); send the batch again later")
        log.info("ingest.published", trace_id=trace_id, records=len(rows), duplicates=batch.duplicates)
        return PublishResult(len(rows), batch.duplicates)

    async def lag(self) -> dict[str, int]:
        """Messages not yet delivered and delivered but not acknowledged, for the durable consumer."""
        info = await self.nc.jetstream().consumer_info(self.settings.stream, self.settings.durable)
        return {"pending": int(info.num_pending or 0), "ack_pending": int(info.num_ack_pending or 0),
                "redelivered": int(info.num_redelivered or 0)}

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()


class PullFetcher:
    """Pulls about ``fetch_batch`` records' worth of messages at a time for a durable consumer; acks/naks them.

    A stream may hold messages of both modes (after ``message_mode`` changed, or
    from collectors configured differently), so the number of messages per pull
    follows the records per message actually seen, not this process's setting.
    """

    def __init__(self, nc: Any, settings: IngestSettings) -> None:
        self.nc = nc
        self.settings = settings
        self.messages = settings.fetch_messages  # per pull; adapted by observe()
        self._buf: list[Any] = []
        self._wake = asyncio.Event()
        self._polling = False
        self._inbox = ""
        self._api = f"$JS.API.CONSUMER.MSG.NEXT.{settings.stream}.{settings.durable}"

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
                asyncio.get_running_loop().call_later(self.settings.fetch_linger_s, self._wake.set)
        elif status in ("404", "408", "409"):
            if status == "409":
                log.warning("ingest.pull_refused", description=msg.headers.get("Description"))
            self._wake.set()

    async def fetch(self) -> list[Any]:
        """The next batch (possibly empty after ``fetch_wait_s`` without messages).

        First what the stream holds right now (``no_wait``: the server sends what
        it has, then a 404, so the tail of a burst is written at once); when
        that is nothing, a long poll that returns ``fetch_linger_s`` after its
        first message arrives (or when the batch is full, or at ``fetch_wait_s``).
        A long poll left open on the server may still deliver messages: they
        wait in the buffer for the next call, so at most two batches are in hand.
        """
        want = self.messages - len(self._buf)
        if want > 0:
            wait = self.settings.fetch_wait_s
            await self._pull({"batch": want, "no_wait": True}, wait + 1.0, polling=False)
            if not self._buf:
                await self._pull({"batch": want, "expires": int(wait * 1e9)}, wait + 1.0, polling=True)
        msgs, self._buf = self._buf, []
        return msgs

    async def _pull(self, request: dict[str, Any], timeout: float, *, polling: bool) -> None:
        self._wake.clear()
        self._polling = polling
        try:
            await self.nc.publish(self._api, orjson.dumps(request), reply=self._inbox)
            await wait_event(self._wake, timeout)
        except Exception as exc:  # disconnected: the client reconnects; try again shortly
            log.warning("ingest.pull_failed", error=repr(exc))
            await asyncio.sleep(min(self.settings.fetch_wait_s, 0.5))
        finally:
            self._polling = False

    def observe(self, messages: int, records: int) -> None:
        """Size the next pulls from a batch of ``messages`` that carried ``records``."""
        if messages > 0 and records > 0:
            per_message = records / messages
            self.messages = max(1, min(self.settings.fetch_batch, round(self.settings.fetch_batch / per_message)))

    async def ack(self, msgs: Sequence[Any]) -> None:
        for m in msgs:
            await self.nc.publish(m.reply, b"+ACK")

    async def nak(self, msgs: Sequence[Any], delay_s: float) -> None:
        body = b'-NAK {"delay": %d}' % int(timedelta(seconds=delay_s).total_seconds() * 1e9)
        for m in msgs:
            await self.nc.publish(m.reply, body)
