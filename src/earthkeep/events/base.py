"""The ``Bus`` port and the ``Event`` record."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from earthkeep.catalog.tables import utcnow


@dataclass(frozen=True)
class Event:
    """Something that happened: ``type`` like ``item.created``, a ``subject`` such as a collection."""

    type: str
    subject: str
    data: dict[str, Any] = field(default_factory=dict)
    trace_id: str | None = None
    time: datetime = field(default_factory=utcnow)


Subscriber = Callable[[Event], Awaitable[None] | None]


@runtime_checkable
class Bus(Protocol):
    async def publish(self, event: Event) -> None:
        """Deliver ``event`` to every sink; a failing sink is logged, never raised."""
        ...

    def subscribe(self, event_type: str, callback: Subscriber) -> None:
        """Call ``callback`` for events of ``event_type`` (``*`` for all)."""
        ...
