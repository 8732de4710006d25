"""``earthkeep serve``: API, scheduler and workers in one process, or any subset of them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator, Sequence
from typing import Any

import structlog
import uvicorn

from earthkeep.config import Settings
from earthkeep.domains import all_schedules, on_startup_all
from earthkeep.events.nats import NatsSink
from earthkeep.granules.config import GranuleConfig
from earthkeep.granules.service import Collector
from earthkeep.instances import heartbeat
from earthkeep.jobs.worker import Worker
from earthkeep.runtime import Services, freeze_startup_objects
from earthkeep.scheduler import Schedule, Scheduler

log = structlog.get_logger(__name__)
ROLES = ("api", "scheduler", "worker", "granules")
DEFAULT_ROLES = "api,scheduler,worker"


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture: ``serve`` owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def parse_roles(text: str) -> list[str]:
    roles = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise ValueError(f"--role takes a comma list of {', '.join(ROLES)}; got {text!r}")
    return roles


def _enqueue_schedule(services: Services, worker: Worker | None) -> callable:  # type: ignore[valid-type]
    def enqueue(s: Schedule) -> None:
        tick = s.name
        services.queue.enqueue(s.kind, s.payload, dedupe_key=f"schedule:{tick}", priority=s.priority)
        if worker is not None:
            worker.wake()

    return enqueue


async def run_service(settings: Settings, roles: Sequence[str], *, services: Services | None = None,
                      stop: asyncio.Event | None = None) -> None:
    """Run the chosen roles until SIGINT/SIGTERM (or ``stop``)."""
    if services is None:
        services = await asyncio.to_thread(Services.open, settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[None]] = []
    worker = None
    if "worker" in roles:
        w = settings.worker
        worker = Worker(services.queue, services.registry, services, concurrency=w.concurrency,
                        lease_s=w.lease_s, poll_s=w.poll_s)
        services.wake_worker = worker.wake
        tasks.append(asyncio.create_task(worker.run(stop)))
    scheduler = None
    if "scheduler" in roles:
        scheduler = Scheduler(_enqueue_schedule(services, worker))
        for schedule in all_schedules(services):
            scheduler.add(schedule)
        scheduler.start()
        log.info("scheduler.started", schedules=scheduler.next_runs())
        await asyncio.to_thread(on_startup_all, services)

    tasks.append(asyncio.create_task(heartbeat(services, roles, stop)))
    if "api" in roles:
        tasks.append(asyncio.create_task(_run_api(settings, services, stop)))
    if "granules" in roles:
        tasks.append(asyncio.create_task(_run_granules(services, stop)))
    log.info("service.started", roles=list(roles), api=f"http://{settings.api.host}:{settings.api.port}")
    try:
        await stop.wait()
    finally:
        if scheduler:
            scheduler.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)
        services.close()
        log.info("service.stopped")


async def _run_granules(services: Services, stop: asyncio.Event) -> None:
    """The granule collector: posttroll/NATS publisher, gatherer, task intake, watcher, e-mails."""
    cfg = GranuleConfig.of(services.settings)
    nats = await NatsSink(cfg.viirs.nats_url, cfg.viirs.nats_subject).connect() if cfg.viirs.nats_url else None
    try:
        async with Collector(services, cfg, nats=nats) as collector:
            log.info("granules.collector_started", address=cfg.viirs.publish_address)
            await collector.ensure_elements()
            await _reload_elements_until(stop, collector, cfg.viirs.elements_reload_s)
    finally:
        if nats is not None:
            await nats.close()


async def _reload_elements_until(stop: asyncio.Event, collector: Any, every_s: float) -> None:
    """Pick up the elements a worker's ``granules.elements`` job stored, until ``stop``."""
    while True:
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
            return
        except TimeoutError:
            try:
                await collector.reload_elements()
            except Exception as exc:  # the store may be down for a while: keep the elements we have
                log.warning("granules.elements_reload_failed", error=str(exc))


async def _run_api(settings: Settings, services: Services, stop: asyncio.Event) -> None:
    from earthkeep.api.app import create_app

    config = uvicorn.Config(create_app(services=services), host=settings.api.host, port=settings.api.port,
                            log_config=None, access_log=False, lifespan="on")
    freeze_startup_objects()
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    await asyncio.wait([serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await serving
    if not stop.is_set():  # the API could not start (port taken...): stop the whole service
        log.error("api.stopped_unexpectedly", port=settings.api.port)
        stop.set()
