"""Ingest on JetStream: the observations stream, the publishing broker, and the consumers' fetcher.

Built on the shared NATS adapter (:func:`earthkeep.events.nats.connect`,
:mod:`earthkeep.events.jetstream`); what is ingest's own is here:

* One stream (file storage, work-queue retention, ``discard new`` when full so
  a backlog pushes back on the collector instead of losing data) on subjects
  ``<subject_prefix>.<station_id>``, and the durable pull consumer, both from
  :class:`~earthkeep.ingest.settings.IngestSettings`.
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
* :func:`observation_fetcher` is a :class:`~earthkeep.events.jetstream.PullFetcher`
  for the durable consumer, pulling ``fetch_batch`` records' worth at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from earthkeep.errors import SourceUnavailable
from earthkeep.events import jetstream
from earthkeep.events.jetstream import AckedPublisher, PullFetcher
from earthkeep.events.nats import MSG_ID_HEADER, connect
from earthkeep.ingest.broker import PublishResult
from earthkeep.ingest.messages import FORMAT_HEADER, ROWS_FORMAT, encode_rows
from earthkeep.ingest.models import Obs
from earthkeep.ingest.settings import IngestSettings

log = structlog.get_logger(__name__)
TRACE_HEADER = "Earthkeep-Trace-Id"


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

    stream = StreamConfig(name=s.stream, subjects=[f"{s.subject_prefix}.>"], storage=StorageType.FILE,
                          retention=RetentionPolicy.WORK_QUEUE, discard=DiscardPolicy.NEW,
                          max_bytes=s.stream_max_bytes, duplicate_window=s.duplicate_window_s)
    consumer = ConsumerConfig(durable_name=s.durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=s.ack_wait_s,
                              max_ack_pending=s.max_ack_pending, max_deliver=s.max_deliver,
                              deliver_policy=DeliverPolicy.ALL, filter_subject=f"{s.subject_prefix}.>")
    await jetstream.ensure_stream(nc, stream, consumer)


def observation_fetcher(nc: Any, s: IngestSettings) -> PullFetcher:
    """The durable consumer's fetcher: ``fetch_batch`` records' worth per pull in either message mode."""
    return PullFetcher(nc, s.stream, s.durable, records=s.fetch_batch, messages=s.fetch_messages,
                       wait_s=s.fetch_wait_s, linger_s=s.fetch_linger_s)


def encode(row: Obs) -> bytes:
    """The message body: the observation as the API's JSON record."""
    return orjson.dumps(row.to_json())


class JetStreamBroker:
    """Publishes observations to JetStream and returns once every message is acknowledged."""

    mode = "nats"

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.nc: Any = None
        self._acks: AckedPublisher | None = None

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
        self._acks = await AckedPublisher(self.nc).start()
        return self

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
            return [(f"{prefix}.{r.station_id}", text, {MSG_ID_HEADER: r.key, TRACE_HEADER: trace}, 1)
                    for r, text in zip(rows, texts, strict=True)]
        size = self.settings.batch_message_records
        out = []
        for i in range(0, len(rows), size):
            chunk = rows[i:i + size]
            body = encode_rows(chunk)
            headers = {MSG_ID_HEADER: "sha256:" + hashlib.sha256(body).hexdigest(), TRACE_HEADER: trace,
                       FORMAT_HEADER: ROWS_FORMAT}
            out.append((f"{prefix}.batch", body, headers, len(chunk)))
        return out

    async def publish(self, rows: Sequence[Obs], *, trace_id: str | None,
                      lines: Sequence[bytes] | None = None) -> PublishResult:
        if not rows:
            return PublishResult(0)
        if self._acks is None:
            raise SourceUnavailable("the JetStream broker is not started; call start() first")
        messages = self._messages(rows, trace_id or "", lines)
        timeout = self.settings.publish_timeout_s
        try:
            acks = await self._acks.publish([m[:3] for m in messages], timeout)
        except Exception as exc:
            raise SourceUnavailable(f"publishing to NATS failed ({exc!r}); send the batch again") from exc
        if not acks.complete:
            raise SourceUnavailable(
                f"JetStream confirmed {acks.confirmed} of {len(messages)} messages within "
                f"{timeout:.0f} s; send the batch again (repeats are dropped)")
        if acks.errors:
            raise SourceUnavailable(f"JetStream refused {len(acks.errors)} of {len(messages)} messages "
                                    f"({acks.errors[0]}); send the batch again later")
        duplicates = sum(messages[i][3] for i in acks.duplicates)
        log.info("ingest.published", trace_id=trace_id, records=len(rows), duplicates=duplicates)
        return PublishResult(len(rows), duplicates)

    async def lag(self) -> dict[str, int]:
        """Messages not yet delivered and delivered but not acknowledged, for the durable consumer."""
        return await jetstream.consumer_lag(self.nc, self.settings.stream, self.settings.durable)

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()
