"""In-process event bus: the embedded default, and the fan-out point for other sinks."""

from __future__ import annotations

import inspect
from collections import defaultdict

import structlog

from earthkeep.events.base import Event, Subscriber

log = structlog.get_logger(__name__)


class Subscribers:
    """Callbacks by event type (``*``: every type); the fan-out of every bus adapter."""

    def __init__(self) -> None:
        self._by_type: dict[str, list[Subscriber]] = defaultdict(list)

    def add(self, event_type: str, callback: Subscriber) -> None:
        self._by_type[event_type].append(callback)

    def __bool__(self) -> bool:
        return any(self._by_type.values())

    async def deliver(self, event: Event) -> None:
        """Call the subscribers of ``event.type``, then those of ``*``; one that raises is logged and skipped."""
        for cb in [*self._by_type.get(event.type, []), *self._by_type.get("*", [])]:
            try:
                out = cb(event)
                if inspect.isawaitable(out):
                    await out
            except Exception as exc:
                log.error("event.subscriber_failed", type=event.type, error=repr(exc))


class MemoryBus:
    """Calls subscribers in-process; errors in a subscriber are logged and contained."""

    def __init__(self) -> None:
        self._subscribers = Subscribers()
        self.published = 0

    def subscribe(self, event_type: str, callback: Subscriber) -> None:
        self._subscribers.add(event_type, callback)

    async def publish(self, event: Event) -> None:
        self.published += 1
        await self._subscribers.deliver(event)
