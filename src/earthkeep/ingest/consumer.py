"""The consumer: pull a batch, drop what was just written, bulk-insert the rest, ack after commit.

At-least-once delivery from JetStream becomes an exactly-once effect in the
database: the primary key (station, ts) with ``ON CONFLICT DO NOTHING`` makes
every redelivery harmless, and the in-memory :class:`DedupeCache` only saves the
database the work of rejecting recent repeats. A batch is acknowledged only
after its transaction committed; when the write fails the batch is nak'ed with
a delay (JetStream redelivers it, perhaps to another consumer) and this
consumer backs off. It fetches the next batch only when the previous one is
done, so a slow database slows the pull rate (the backlog waits in the stream).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Engine

from earthkeep.ingest.deadletters import record_dead_letters
from earthkeep.ingest.dedupe import DedupeCache
from earthkeep.ingest.jetstream import TRACE_HEADER, PullFetcher
from earthkeep.ingest.models import Obs, Rejection, parse_lines, validate_records
from earthkeep.ingest.settings import IngestSettings
from earthkeep.ingest.stats import ConsumerStats
from earthkeep.ingest.writer import ObservationWriter
from earthkeep.waits import wait_event

log = structlog.get_logger(__name__)


@dataclass
class _Batch:
    msgs: Sequence[Any]
    rows: list[Obs]
    rejections: list[Rejection]
    traces: Counter[str | None]
    dropped: int

    @property
    def keys(self) -> list[tuple[str, Any]]:
        return [(r.station_id, r.ts) for r in self.rows]


class ObservationConsumer:
    """One consumer of the durable: run several (threads, processes, machines) to share the stream."""

    def __init__(self, fetcher: PullFetcher, writer: ObservationWriter, engine: Engine,
                 settings: IngestSettings) -> None:
        self.fetcher = fetcher
        self.writer = writer
        self.engine = engine
        self.settings = settings
        self.dedupe = DedupeCache(settings.dedupe_size, settings.dedupe_age_s)
        self.stats = ConsumerStats("nats")
        self._failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set.

        Two batches are in flight at most: while one is being written and
        acknowledged, the next is fetched and decoded (the database still has
        the final word on duplicates between them).
        """
        log.info("ingest.consumer_started", instance=self.stats.instance, durable=self.settings.durable)
        flusher = asyncio.create_task(self._flush_stats(stop))
        writing: asyncio.Task[bool] | None = None
        try:
            while not stop.is_set():
                msgs = await self.fetcher.fetch()
                batch = self.prepare(msgs) if msgs else None
                if writing is not None and not await writing:
                    await self._back_off(stop)
                writing = asyncio.create_task(self.commit(batch)) if batch else None
        finally:
            if writing is not None:
                with contextlib.suppress(Exception):
                    await writing
            flusher.cancel()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.stats.flush, self.engine)
            log.info("ingest.consumer_stopped", **self.stats.snapshot())

    async def _back_off(self, stop: asyncio.Event) -> None:
        delay = min(self.settings.retry_max_s, 0.2 * 2 ** min(self._failures, 10))
        await wait_event(stop, delay)

    async def handle(self, msgs: Sequence[Any]) -> bool:
        """Write one batch; True when it was committed and acknowledged."""
        return await self.commit(self.prepare(msgs))

    def prepare(self, msgs: Sequence[Any]) -> _Batch:
        """Decode and validate ``msgs``; drop keys written recently (the in-memory cache)."""
        rows, rejections, traces, dropped = self._decode(msgs)
        records = sum(traces.values())
        self.stats.received += records  # records, whatever the message mode
        self.fetcher.observe(len(msgs), records)
        return _Batch(msgs, rows, rejections, traces, dropped)

    async def commit(self, b: _Batch) -> bool:
        """Insert, commit, then ack; on failure nak with a delay (JetStream redelivers)."""
        try:
            if b.rejections:
                await asyncio.to_thread(record_dead_letters, self.engine, "consumer", b.rejections, None)
            result = await asyncio.to_thread(self.writer.write, b.rows)
        except Exception as exc:
            self._failures += 1
            self.stats.failed_batches += 1
            log.warning("ingest.batch_failed", error=str(exc), records=len(b.msgs), attempt=self._failures,
                        trace_ids=sorted(t for t in b.traces if t))
            await self.fetcher.nak(b.msgs, min(self.settings.retry_max_s, 0.5 * self._failures))
            return False
        self._failures = 0
        self.dedupe.add_many(b.keys)
        await self.fetcher.ack(b.msgs)
        self.stats.dropped_memory += b.dropped
        self.stats.inserted += result.inserted
        self.stats.dropped_db += result.duplicates
        self.stats.dead_letters += len(b.rejections)
        for trace_id, n in b.traces.items():
            log.info("ingest.consumed", trace_id=trace_id, records=n, messages=len(b.msgs),
                     inserted=result.inserted, write_s=round(result.seconds, 4))
        return True

    def _decode(self, msgs: Sequence[Any]) -> tuple[list[Obs], list[Rejection], Counter[str | None], int]:
        records: list[Any] = []
        traces: Counter[str | None] = Counter()
        for m in msgs:
            decoded, _ = parse_lines(m.data)  # a message is NDJSON: one record, or a chunk (batch mode)
            traces[(m.headers or {}).get(TRACE_HEADER) or None] += len(decoded)
            records += decoded
        good, bad = validate_records(records, known_station=_any_station, future_tolerance_s=86400 * 365)
        rows: list[Obs] = []
        batch_keys: set[tuple[str, Any]] = set()
        dropped = 0
        dedupe = self.dedupe
        for obs in good:
            key = (obs.station_id, obs.ts)
            if key in batch_keys or key in dedupe:
                dropped += 1
                continue
            batch_keys.add(key)
            rows.append(obs)
        return rows, bad, traces, dropped

    async def _flush_stats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.settings.stats_every_s)
            try:
                await asyncio.to_thread(self.stats.flush, self.engine)
            except Exception as exc:
                log.warning("ingest.stats_flush_failed", error=str(exc))


async def run_consumers(engine: Engine, settings: IngestSettings, stop: asyncio.Event, *, count: int = 1,
                        after_commit: Any = None) -> list[ObservationStatsView]:
    """Run ``count`` consumers on one NATS connection until ``stop``; their final stats."""
    from earthkeep.ingest.jetstream import connect, ensure_stream

    nc = await connect(settings.nats_url, name="earthkeep-consumer")
    try:
        await ensure_stream(nc, settings)
        consumers = []
        for _ in range(count):
            fetcher = await PullFetcher(nc, settings).start()
            writer = ObservationWriter(engine, after_commit=after_commit)
            consumers.append(ObservationConsumer(fetcher, writer, engine, settings))
        await asyncio.gather(*(c.run(stop) for c in consumers))
        return [c.stats.snapshot() for c in consumers]
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()


ObservationStatsView = dict[str, Any]


def _any_station(_: str) -> bool:  # the collector checked the registry; a record is not refused for it later
    return True
