"""Job kinds and their handlers.

A handler is ``async def handler(ctx: JobContext) -> dict | None`` (a plain
function runs in a thread). Domains register their kinds in one call each;
an unknown kind is refused at enqueue time with the list of known ones.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from earthkeep.catalog.tables import Job
from earthkeep.errors import InvalidInput


def lease_owner(job_id: int | None) -> str:
    """The owner of a lease a handler takes (file claims, mirror locks): its job, else a fresh id.

    Owned by the job, a lease left by a worker killed mid-work is taken over at
    once by the job's next attempt (the queue's own lease already guarantees one
    live attempt at a time). With a per-attempt owner the retry found the work
    "held" by its dead predecessor, skipped it and completed with nothing done
    until the lease's TTL had passed (found by tests/e2e/test_crash.py for GFS
    file claims and the granule mirror lock).
    """
    return f"job-{job_id}" if job_id is not None else uuid.uuid4().hex


@dataclass
class JobContext:
    """What a handler receives: its job, the services, a bound logger and a lease check."""

    job: Job
    services: Any
    log: structlog.stdlib.BoundLogger
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload or {}


Handler = Callable[[JobContext], Awaitable[dict[str, Any] | None] | dict[str, Any] | None]


@dataclass(frozen=True)
class Kind:
    name: str
    handler: Handler
    max_attempts: int | None = None
    timeout_s: float | None = None
    description: str = ""
    housekeeping: bool = False  # frequent upkeep (lease reaping, sweeps): hidden from `jobs list` unless asked
    validate: Callable[[dict[str, Any]], None] | None = None  # refuse a bad payload before it is queued


class HandlerRegistry:
    """Maps a job kind to its handler."""

    def __init__(self) -> None:
        self._kinds: dict[str, Kind] = {}

    def register(
        self, name: str, handler: Handler, *, max_attempts: int | None = None,
        timeout_s: float | None = None, description: str = "", housekeeping: bool = False,
        validate: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if name in self._kinds:
            if self._kinds[name].handler is handler:
                return  # the same domain registered twice (e.g. a test helper after Services.open)
            raise ValueError(f"job kind {name!r} registered twice with different handlers")
        self._kinds[name] = Kind(name, handler, max_attempts, timeout_s, description or (handler.__doc__ or ""),
                                 housekeeping, validate)

    def get(self, name: str) -> Kind:
        try:
            return self._kinds[name]
        except KeyError:
            known = ", ".join(sorted(self._kinds)) or "none"
            raise InvalidInput(f"unknown job kind {name!r}; known kinds: {known}") from None

    def check(self, name: str, payload: dict[str, Any]) -> None:
        """Raise :class:`InvalidInput` when ``name`` is unknown or its validator refuses ``payload``."""
        kind = self.get(name)
        if kind.validate is not None:
            kind.validate(payload)

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def housekeeping(self) -> list[str]:
        """Kinds registered as housekeeping (``jobs list`` hides them unless ``--all``)."""
        return sorted(k.name for k in self._kinds.values() if k.housekeeping)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds


async def call_handler(kind: Kind, ctx: JobContext) -> dict[str, Any] | None:
    """Run a handler (async, or sync in a thread) with its optional timeout."""
    if inspect.iscoroutinefunction(kind.handler):
        coro: Awaitable[Any] = kind.handler(ctx)
    else:
        coro = asyncio.to_thread(kind.handler, ctx)
    if kind.timeout_s:
        return await asyncio.wait_for(coro, kind.timeout_s)
    return await coro
