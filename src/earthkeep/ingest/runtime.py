"""The ingest pieces of one process, built lazily from the services and the ingest settings."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import structlog

from earthkeep.ingest.broker import Broker, EmbeddedBroker
from earthkeep.ingest.cache import make_cache
from earthkeep.ingest.collector import Collector
from earthkeep.ingest.dedupe import DedupeCache
from earthkeep.ingest.generator import Generator
from earthkeep.ingest.ratelimit import RateLimiter
from earthkeep.ingest.settings import IngestSettings
from earthkeep.ingest.stations import StationDirectory
from earthkeep.ingest.writer import ObservationWriter
from earthkeep.logs import bind_trace, new_trace_id
from earthkeep.retry import Backoff
from earthkeep.waits import wait_event

if TYPE_CHECKING:
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)


class IngestRuntime:
    """Collector, broker, cache, rate limiter, generator and in-process consumers of one process."""

    def __init__(self, services: Services, settings: IngestSettings) -> None:
        self.services = services
        self.settings = settings
        self.engine = services.engine
        self.cache = make_cache(settings.redis_url, settings.cache_ttl_s)
        self.stations = StationDirectory(self.engine)
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
        self._broker: Broker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._generator: Generator | None = None
        self._consumers: asyncio.Task[Any] | None = None
        self._stop = asyncio.Event()
        self._timescale: bool | None = None

    def writer(self) -> ObservationWriter:
        return ObservationWriter(self.engine, after_commit=self.cache.invalidate)

    async def broker(self) -> Broker:
        """The configured broker, connected on first use in the running event loop."""
        loop = asyncio.get_running_loop()
        if self._broker is None or self._loop is not loop:
            if self.settings.broker == "nats":
                from earthkeep.ingest.jetstream import JetStreamBroker

                self._broker = await JetStreamBroker(self.settings).start()
            else:
                self._broker = EmbeddedBroker(
                    self.writer(), self.engine, stats_every_s=self.settings.stats_every_s,
                    dedupe=DedupeCache(self.settings.dedupe_size, self.settings.dedupe_age_s))
            self._loop = loop
        return self._broker

    async def collector(self) -> Collector:
        return Collector(await self.broker(), self.stations, self.engine,
                         future_tolerance_s=self.settings.future_tolerance_s)

    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = Generator(self._generator_submit, self._generator_register)
        return self._generator

    async def _generator_submit(self, records: list[dict[str, Any]]) -> tuple[int, int]:
        from earthkeep.ingest.collector import Parsed

        trace = new_trace_id()
        bind_trace(trace)
        result = await (await self.collector()).submit(Parsed(records), trace_id=trace)
        return result.accepted, len(result.rejected)

    async def _generator_register(self, stations: list[Any]) -> None:
        from earthkeep.ingest.stations import upsert_stations

        def save() -> None:
            with self.services.sessions.begin() as s:
                upsert_stations(s, stations)
            self.stations.refresh()

        await asyncio.to_thread(save)

    def timescale(self) -> bool:
        if self._timescale is None:
            from earthkeep.ingest.queries import timescale_installed

            self._timescale = timescale_installed(self.engine)
        return self._timescale

    def start_consumers(self, count: int) -> None:
        """Run ``count`` consumers in this process's event loop (nats mode)."""
        from earthkeep.ingest.consumer import run_consumers

        if count <= 0 or self.settings.broker != "nats" or self._consumers is not None:
            return
        self._stop.clear()

        async def supervise() -> None:
            backoff, failures = Backoff(base_s=0.5, max_s=10.0), 0
            while not self._stop.is_set():
                try:
                    await run_consumers(self.engine, self.settings, self._stop, count=count,
                                        after_commit=self.cache.invalidate)
                except Exception as exc:  # NATS not reachable yet: keep trying
                    failures += 1
                    delay = backoff.delay(failures)
                    log.warning("ingest.consumers_restarting", error=str(exc), in_s=round(delay, 2))
                    await wait_event(self._stop, delay)

        self._consumers = asyncio.create_task(supervise())

    async def flush_stats(self) -> None:
        """Write this process's embedded-writer counters now (so a read sees them)."""
        if isinstance(self._broker, EmbeddedBroker):
            await asyncio.to_thread(self._broker.stats.flush, self.engine)

    async def lag(self) -> dict[str, int] | None:
        broker = await self.broker()
        lag = getattr(broker, "lag", None)
        return await lag() if lag else None

    async def close(self) -> None:
        if self._generator is not None:
            await self._generator.stop()
        if self._consumers is not None:
            self._stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumers, 30)
            self._consumers = None
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await self._broker.close()
            self._broker = None
        close_cache = getattr(self.cache, "close", None)
        if close_cache is not None:
            close_cache()


def ingest_settings(services: Services) -> IngestSettings:
    """The ``[ingest]`` section of ``services``."""
    return services.settings.of(IngestSettings)


def runtime_for(services: Services, settings: IngestSettings | None = None) -> IngestRuntime:
    """The process's :class:`IngestRuntime` (created on first use; ``settings`` only then)."""
    from earthkeep.ingest.domain import DOMAIN

    state = DOMAIN.of(services).state
    if state.runtime is None:
        state.runtime = IngestRuntime(services, settings or ingest_settings(services))
    return state.runtime
