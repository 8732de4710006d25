"""The broker port, and the embedded adapter that writes through to the database.

A broker *accepts* a batch of validated observations durably or raises: the
collector answers 202 only after :meth:`Broker.publish` returned. Two adapters:

* :class:`EmbeddedBroker` (``broker = "embedded"``): writes the batch to the
  database in the request (insert + rollup, committed) — the same guarantee
  with no moving parts.
* :class:`earthkeep.ingest.jetstream.JetStreamBroker` (``broker = "nats"``):
  publishes the batch to JetStream (one message per chunk, or per observation
  in ``record`` mode) and waits for every publish ack; a consumer writes them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Protocol

import structlog
from sqlalchemy import Engine

from earthkeep.ingest.dedupe import DedupeCache, first_by_key
from earthkeep.ingest.models import Obs
from earthkeep.ingest.stats import ConsumerStats
from earthkeep.ingest.writer import ObservationWriter

log = structlog.get_logger(__name__)
_KEY = itemgetter(0, 1)  # (station_id, ts)


@dataclass(frozen=True)
class PublishResult:
    """``accepted`` records durably taken; ``duplicates`` among them already known to the broker/DB."""

    accepted: int
    duplicates: int = 0


class Broker(Protocol):
    """Where the collector hands validated observations."""

    mode: str

    async def publish(self, rows: Sequence[Obs], *, trace_id: str | None,
                      lines: Sequence[bytes] | None = None) -> PublishResult:
        """Durably accept ``rows`` or raise :class:`~earthkeep.errors.SourceUnavailable`.

        ``lines``, when given, is each row's JSON text as the client sent it (already validated).
        """
        ...

    async def close(self) -> None: ...


class EmbeddedBroker:
    """Write-through: the request's batch is committed to the database before ``publish`` returns.

    Repeats within the request, and records committed recently (a bounded
    :class:`DedupeCache`), are dropped before the write; unlike the consumers'
    cache, a key another request is still writing is not dropped here, because
    that request may fail and nothing would redeliver the record.
    """

    mode = "embedded"

    def __init__(self, writer: ObservationWriter, engine: Engine, *, stats_every_s: float = 2.0,
                 dedupe: DedupeCache | None = None) -> None:
        self.writer = writer
        self.engine = engine
        self.stats = ConsumerStats("embedded")
        self.dedupe = dedupe if dedupe is not None else DedupeCache(500_000, 3600.0)
        self._stats_every_s = stats_every_s
        self._lock = threading.Lock()

    async def publish(self, rows: Sequence[Obs], *, trace_id: str | None,
                      lines: Sequence[bytes] | None = None) -> PublishResult:
        unique = first_by_key(rows, _KEY)
        recent = self.dedupe.recent()
        for key in unique.keys() & recent:
            del unique[key]
        fresh = list(unique.values())
        result = await asyncio.to_thread(self._write, fresh, len(rows) - len(fresh))
        self.dedupe.add_many(unique)
        duplicates = len(rows) - result.inserted
        log.info("ingest.written", trace_id=trace_id, records=len(rows), inserted=result.inserted,
                 duplicates=duplicates)
        return PublishResult(len(rows), duplicates)

    def _write(self, rows: Sequence[Obs], dropped: int):  # type: ignore[no-untyped-def]
        try:
            result = self.writer.write(rows)
        except Exception:
            with self._lock:
                self.stats.failed_batches += 1
            raise
        with self._lock:
            self.stats.received += len(rows) + dropped
            self.stats.dropped_memory += dropped
            self.stats.inserted += result.inserted
            self.stats.dropped_db += result.duplicates
        try:
            self.stats.flush(self.engine, every_s=self._stats_every_s)
        except Exception as exc:  # counters are best effort; the batch is committed
            log.warning("ingest.stats_flush_failed", error=repr(exc))
        return result

    async def close(self) -> None:
        await asyncio.to_thread(self.stats.flush, self.engine)
