"""The long-running part of the domain: publisher, announcer, gatherer, task intake, status, watcher, mail.

``Collector`` is what ``earthkeep granules run`` (and a ``granules`` service
role) keeps alive. Mirror runs may happen in the same process (their
``stored`` hook wakes the announcer at once) or in job workers elsewhere (the
announcer finds their messages in the outbox at its next poll).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from earthkeep.events.posttroll import PosttrollPublisher, PosttrollSink
from earthkeep.granules import tasks
from earthkeep.granules.gatherer import GATHERER_KEY, Dataset, Gatherer
from earthkeep.granules.mail import MailAlerts
from earthkeep.granules.mirror import MirrorHooks
from earthkeep.granules.orbits import Elements
from earthkeep.granules.outbox import add_message
from earthkeep.granules.publisher import Announcer, attach_sinks, message_event
from earthkeep.granules.watcher import DirectoryWatcher
from earthkeep.sources.gina import PLATFORMS

if TYPE_CHECKING:
    from earthkeep.events.nats import NatsSink
    from earthkeep.granules.config import GranuleConfig
    from earthkeep.granules.tables import GranuleMessage
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)


def mid_time(data: dict[str, Any]) -> datetime:
    start = datetime.fromisoformat(str(data["start_time"]))
    end = datetime.fromisoformat(str(data["end_time"]))
    return start + (end - start) / 2


class Collector:
    """Start with :meth:`start`, stop with :meth:`stop` (or ``async with``)."""

    def __init__(self, services: Services, cfg: GranuleConfig, *, publisher: PosttrollPublisher | None = None,
                 nats: NatsSink | None = None, alerts: MailAlerts | None = None,
                 clock: Callable[[], float] = time.monotonic, poll_s: float = 0.5,
                 join_grace_s: float = 1.0) -> None:
        self.services, self.cfg = services, cfg
        self.publisher = publisher or PosttrollPublisher(cfg.viirs.publish_address)
        self.nats = nats
        self.alerts = alerts or MailAlerts(cfg.mail, interval_s=cfg.viirs.mail_interval_s, port=cfg.viirs.mail_port)
        self.gatherer = Gatherer(cfg.viirs.products, cfg.viirs.topic_prefix, clock=clock)
        self.announcer = Announcer(services, poll_s=poll_s, on_message=self._on_message)
        self.elements = Elements()
        self.watcher: DirectoryWatcher | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._switches: list[Any] = []
        self.join_grace_s = join_grace_s

    async def start(self) -> Collector:
        self.publisher.start()
        sinks: list[Any] = [PosttrollSink(self.publisher)]
        if self.nats is not None:
            sinks.append(self.nats)
        self._switches = attach_sinks(self.services.bus, *sinks)
        await self.reload_elements()
        self._spawn(self._announce(), self._expire_loop(), self._status_loop(), self.alerts.run())
        if self.cfg.viirs.watch_dir is not None:
            self.watcher = await DirectoryWatcher(self.services, self.cfg, self.cfg.viirs.watch_dir,
                                                  on_stored=self.announcer.wake).start()
        return self

    async def _announce(self) -> None:
        # Subscribers of the previous process reconnect within ZMQ's reconnect interval
        # (100 ms): give them that long before the backlog of the outbox goes out.
        await asyncio.sleep(self.join_grace_s)
        await self.announcer.run()

    def _spawn(self, *coros: Coroutine[Any, Any, Any]) -> None:
        self._tasks += [asyncio.create_task(c) for c in coros]

    async def stop(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()
        for t in self._tasks:
            t.cancel()
        if self._tasks:  # bounded: a task that swallowed its cancellation must not hang shutdown
            _, stuck = await asyncio.wait(self._tasks, timeout=10)
            if stuck:
                log.warning("granules.tasks_not_stopped", count=len(stuck))
        self._tasks.clear()
        for sw in self._switches:
            sw.on = False
        await self.alerts.aflush(force=True)
        self.publisher.stop()

    async def __aenter__(self) -> Collector:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def hooks(self, **kw: Any) -> MirrorHooks:
        """Mirror hooks of this process: wake the announcer, e-mail errors."""
        return MirrorHooks(stored=self.announcer.wake, alerts=self.alerts, **kw)

    async def save_gatherer(self) -> None:
        """The gatherer's open slots into the store (``GATHERER_KEY``), for ``GET /granules/gatherer``."""
        snap = {"updated_at": datetime.now(UTC).isoformat(), **self.gatherer.snapshot()}
        await self.services.store.put(GATHERER_KEY, json.dumps(snap).encode(), content_type="application/json")

    async def ensure_elements(self) -> bool:
        """Fetch the orbital elements (``EARTHKEEP_TLE_URL``) when the store has none; whether there are some.

        ``serve --role granules`` calls it at start, so pass directions are known
        before the first ``granules.elements`` job runs; a failure is logged and
        e-mailed, and messages say ``direction: unknown`` until elements arrive.
        """
        from earthkeep.granules.orbits import refresh_elements

        if self.elements.sets:
            return True
        try:
            await refresh_elements(self.services, self.cfg.viirs.tle_url)
        except Exception as exc:  # the collector runs on without directions
            log.error("granules.elements_unavailable", url=self.cfg.viirs.tle_url, error=str(exc))
            self.alerts.error("elements", f"orbital elements could not be fetched: {exc}")
            return False
        await self.reload_elements()
        return bool(self.elements.sets)

    async def reload_elements(self) -> None:
        elements = await Elements.from_store(self.services.store)
        for name in list(self.cfg.viirs.platforms):  # build the orbit models off the event loop

            await asyncio.to_thread(elements.orbital, PLATFORMS[name].name)
        self.elements = elements

    async def _on_message(self, row: GranuleMessage) -> None:
        if row.type == "file":
            await self.emit(self.gatherer.add(row.data))

    async def emit(self, datasets: list[Dataset]) -> None:
        """Queue each dataset's message and task in one transaction."""
        for d in datasets:
            try:
                await asyncio.to_thread(self._queue, d)
            except Exception as exc:
                log.error("granules.enqueue_failed", product=d.product, error=repr(exc))
                self.alerts.error("broker", f"could not queue a {d.product} task: {exc}")
        if datasets:
            self.announcer.wake()

    def _queue(self, d: Dataset) -> None:
        direction = self.elements.direction(str(d.data["platform_name"]), mid_time(d.data))
        data = {**d.data, "direction": direction}
        with self.services.sessions.begin() as s:
            add_message(s, d.subject, "dataset", data)
            task, created = tasks.enqueue(s, product=d.product, subject=d.subject, data=data,
                                           direction=direction, orbit_slack=self.cfg.viirs.orbit_slack)
        log.info("granules.task_queued" if created else "granules.task_updated", task_id=task.id,
                 product=d.product, orbit=d.data["orbit_number"], direction=direction)

    async def _expire_loop(self, every_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self.emit(self.gatherer.expire())

    async def publish_status(self) -> dict[str, Any]:
        """Publish the queue status message now; its data."""
        def counts() -> dict[str, Any]:
            with self.services.sessions() as s:
                return tasks.status_counts(s)

        data = await asyncio.to_thread(counts)
        subject = f"{self.cfg.viirs.topic_prefix}/tasks/status"
        await self.services.bus.publish(message_event(subject, "info", data))
        return data

    async def _status_loop(self) -> None:
        while True:
            try:
                await self.publish_status()
                await self.save_gatherer()
            except Exception as exc:
                log.error("granules.status_failed", error=repr(exc))
                self.alerts.error("broker", f"queue status failed: {exc}")
            await asyncio.sleep(self.cfg.viirs.status_interval_s)
