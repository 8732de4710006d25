"""The announcer: publishes the outbox on the bus, whose sinks are ZMQ (posttroll) and NATS.

Delivery is at least once: a message is marked sent after every sink had it,
so a crash in between publishes it again after the restart (subscribers can
tell by ``uid``). A stop (cancellation) is not a crash: the message in flight
is finished (published, marked sent, handed to ``on_message``) before the
announcer stops, so a restart never publishes it twice. Order is the outbox order.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import structlog

from earthkeep.events.base import Event
from earthkeep.granules.messages import to_wire
from earthkeep.granules.outbox import mark_sent, unsent
from earthkeep.waits import wait_event

if TYPE_CHECKING:
    from earthkeep.events.base import Bus
    from earthkeep.granules.tables import GranuleMessage
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)
EVENT_TYPES = ("granule.file", "granule.dataset", "granule.status")


def message_event(subject: str, atype: str, data: dict[str, Any], msg_id: str | None = None) -> Event:
    """A bus event carrying a posttroll message (``data["posttroll"]`` = subject, type, wire data)."""
    payload: dict[str, Any] = {"posttroll": (subject, atype, to_wire(data)), "data": data}
    if msg_id:
        payload["msg_id"] = msg_id
    return Event(f"granule.{atype if atype in ('file', 'dataset') else 'status'}", subject, payload)


class Switched:
    """A sink that can be turned off (the bus has no unsubscribe; a stopped collector's sinks go quiet)."""

    def __init__(self, sink: Callable[[Event], Awaitable[None] | None]) -> None:
        self.sink, self.on = sink, True

    async def __call__(self, event: Event) -> None:
        if self.on:
            out = self.sink(event)
            if inspect.isawaitable(out):
                await out


def attach_sinks(bus: Bus, *sinks: Callable[[Event], Awaitable[None] | None]) -> list[Switched]:
    """Subscribe each sink to every granule event type; the switches turn them off."""
    switches = [Switched(sink) for sink in sinks]
    for sw in switches:
        for etype in EVENT_TYPES:
            bus.subscribe(etype, sw)
    return switches


async def finish_before_stopping(step: Coroutine[Any, Any, None]) -> None:
    """Run ``step`` to its end even when the caller is cancelled meanwhile; then let the cancellation through.

    Cancelled in the middle, a message would be out on the bus but not marked
    sent (a cancelled ``to_thread`` that had not started never runs), and the
    next process would publish it again.
    """
    task = asyncio.ensure_future(step)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            log.error("granules.announce_failed", error=repr(task.exception()))
        raise


class Announcer:
    """Moves outbox messages to the bus; ``on_message`` sees each one after it went out."""

    def __init__(self, services: Services, *, poll_s: float = 0.5,
                 on_message: Callable[[GranuleMessage], Awaitable[None]] | None = None) -> None:
        self.services, self.poll_s, self.on_message = services, poll_s, on_message
        self._wake = asyncio.Event()
        self.published = 0

    def wake(self, *_: Any) -> None:
        """Something was just written to the outbox: publish now rather than at the next poll."""
        self._wake.set()

    def _load(self) -> list[GranuleMessage]:
        with self.services.sessions() as s:
            return unsent(s)

    def _mark(self, ids: list[int]) -> None:
        with self.services.sessions.begin() as s:
            mark_sent(s, ids)

    async def drain(self) -> int:
        """Publish every unsent message; how many."""
        total = 0
        while rows := await asyncio.to_thread(self._load):
            for row in rows:
                await finish_before_stopping(self._announce(row))
            total += len(rows)
        self.published += total
        return total

    async def _announce(self, row: GranuleMessage) -> None:
        await self.services.bus.publish(message_event(row.subject, row.type, row.data, f"granule-{row.id}"))
        await asyncio.to_thread(self._mark, [row.id])
        if self.on_message is not None:
            await self.on_message(row)

    async def run(self) -> None:
        """Drain, then wait for a wake-up or the poll interval, forever (cancel to stop)."""
        while True:
            try:
                await self.drain()
            except Exception as exc:  # the catalog may be briefly unreachable: keep going
                log.error("granules.announce_failed", error=repr(exc))
            await wait_event(self._wake, self.poll_s)
            self._wake.clear()
