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
from operator import itemgetter
from typing import Any

import structlog
from sqlalchemy import Engine

from earthkeep.events.jetstream import PullFetcher
from earthkeep.events.nats import connect
from earthkeep.ingest.deadletters import record_dead_letters
from earthkeep.ingest.dedupe import DedupeCache, first_by_key
from earthkeep.ingest.jetstream import TRACE_HEADER
from earthkeep.ingest.messages import decode_message
from earthkeep.ingest.models import Obs, Rejection
from earthkeep.ingest.settings import IngestSettings
from earthkeep.ingest.stats import ConsumerStats
from earthkeep.ingest.writer import ObservationWriter
from earthkeep.waits import Stopped, unless_stopped, wait_event

log = structlog.get_logger(__name__)
_KEY = itemgetter(0, 1)  # (station_id, ts): what makes an observation unique


@dataclass
class _Batch:
    msgs: Sequence[Any]
    rows: list[Obs]
    keys: list[tuple[str, Any]]  # (station, ts) of each row: in flight in the dedupe cache until settled
    rejections: list[Rejection]
    traces: Counter[str | None]
    dropped: int
    flight: asyncio.Future[bool]  # set once this batch's rows are committed (True) or never will be (False)
    depends: set[Any]  # the flights of other batches that are writing records this one dropped

    def land(self, written: bool) -> None:
        if not self.flight.done():
            self.flight.set_result(written)


class ObservationConsumer:
    """One consumer of the durable: run several (threads, processes, machines) to share the stream."""

    def __init__(self, fetcher: PullFetcher, writer: ObservationWriter, engine: Engine,
                 settings: IngestSettings, *, dedupe: DedupeCache | None = None) -> None:
        self.fetcher = fetcher
        self.writer = writer
        self.engine = engine
        self.settings = settings
        # shared by the consumers of a process (run_consumers)
        self.dedupe = dedupe if dedupe is not None else DedupeCache(settings.dedupe_size, settings.dedupe_age_s)
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
                try:
                    if writing is not None and not await writing:
                        await self._back_off(stop)
                except BaseException:
                    if batch is not None:  # never written: its keys must not stay "in flight"
                        self.dedupe.settle(batch.keys, batch.flight, written=False)
                        batch.land(False)
                    raise
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
        good, rejections, traces = self._decode(msgs)
        flight: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        # one row per key, none written recently; keys other batches are writing are left to them
        fresh, depends = self.dedupe.claim(first_by_key(good, _KEY), flight)
        records = sum(traces.values())
        self.stats.received += records  # records, whatever the message mode
        self.fetcher.observe(len(msgs), records)
        return _Batch(msgs, list(fresh.values()), list(fresh), rejections, traces, len(good) - len(fresh),
                      flight, depends)

    async def commit(self, b: _Batch) -> bool:
        """Insert, commit, then ack; on failure nak with a delay (JetStream redelivers).

        The batch's keys leave the cache's "in flight" set whatever happens
        (remembered as written only after the commit). The messages are acked
        only once the batches holding the records this one dropped have
        written them too; if one of those failed, they are nak'ed instead.
        """
        written = False
        try:
            if b.rejections:
                await asyncio.to_thread(record_dead_letters, self.engine, "consumer", b.rejections, None)
            result = await asyncio.to_thread(self.writer.write, b.rows)
            written = True
        except Exception as exc:
            self._failures += 1
            self.stats.failed_batches += 1
            log.warning("ingest.batch_failed", error=str(exc), records=len(b.msgs), attempt=self._failures,
                        trace_ids=sorted(t for t in b.traces if t))
            await self.fetcher.nak(b.msgs, min(self.settings.retry_max_s, 0.5 * self._failures))
            return False
        finally:
            self.dedupe.settle(b.keys, b.flight, written=written)
            b.land(written)
        self._failures = 0
        self.stats.inserted += result.inserted
        self.stats.dropped_db += result.duplicates
        self.stats.dead_letters += len(b.rejections)
        if not await self._others_wrote(b):
            log.warning("ingest.batch_redelivered", reason="a batch holding some of its records failed",
                        records=len(b.msgs), trace_ids=sorted(t for t in b.traces if t))
            await self.fetcher.nak(b.msgs, 0.5)
            return False
        await self.fetcher.ack(b.msgs)
        self.stats.dropped_memory += b.dropped
        for trace_id, n in b.traces.items():
            log.info("ingest.consumed", trace_id=trace_id, records=n, messages=len(b.msgs),
                     inserted=result.inserted, write_s=round(result.seconds, 4))
        return True

    async def _others_wrote(self, b: _Batch) -> bool:
        """True once every batch this one depends on committed (False if one failed or hangs past ack_wait)."""
        if not b.depends:
            return True
        done, pending = await asyncio.wait(b.depends, timeout=self.settings.ack_wait_s)
        return not pending and all(f.result() for f in done)

    def _decode(self, msgs: Sequence[Any]) -> tuple[list[Obs], list[Rejection], Counter[str | None]]:
        good: list[Obs] = []
        bad: list[Rejection] = []
        traces: Counter[str | None] = Counter()
        offset = 0  # a rejection's index counts the records of the whole pull
        for m in msgs:
            rows, rejected, seen = decode_message(m.data, m.headers)
            traces[(m.headers or {}).get(TRACE_HEADER) or None] += seen
            good += rows
            bad += [Rejection(offset + r.index, r.reason, r.station_id, r.record) for r in rejected]
            offset += seen
        return good, bad, traces

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
    from earthkeep.ingest.jetstream import ensure_stream, observation_fetcher

    try:  # NATS down: the connect retries without end; a stop must not wait for it
        nc = await unless_stopped(connect(settings.nats_url, name="earthkeep-consumer"), stop)
    except Stopped:
        return []
    try:
        await ensure_stream(nc, settings)
        consumers = []
        dedupe = DedupeCache(settings.dedupe_size, settings.dedupe_age_s)
        for _ in range(count):
            fetcher = await observation_fetcher(nc, settings).start()
            writer = ObservationWriter(engine, after_commit=after_commit)
            consumers.append(ObservationConsumer(fetcher, writer, engine, settings, dedupe=dedupe))
        await asyncio.gather(*(c.run(stop) for c in consumers))
        return [c.stats.snapshot() for c in consumers]
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()


ObservationStatsView = dict[str, Any]

