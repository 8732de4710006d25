"""In-process event bus: the embedded default, and the fan-out point for other sinks."""

from __future__ import annotations

import inspect
from collections import defaultdict

import structlog

from earthkeep.events.base import Event, Subscriber

log = structlog.get_logger(__name__)


class MemoryBus:
    """Calls subscribers in-process; errors in a subscriber are logged and contained."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Subscriber]] = defaultdict(list)
        self.published = 0

    def subscribe(self, event_type: str, callback: Subscriber) -> None:
        self._subs[event_type].append(callback)

    async def publish(self, event: Event) -> None:
        self.published += 1
        for cb in [*self._subs.get(event.type, []), *self._subs.get("*", [])]:
            try:
                out = cb(event)
                if inspect.isawaitable(out):
                    await out
            except Exception as exc:
                log.error("event.subscriber_failed", type=event.type, error=repr(exc))
