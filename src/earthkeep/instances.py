"""Which `earthkeep serve` processes run, with which roles: a heartbeat row per process in the catalog.

Each process inserts its row at start, refreshes ``seen_at`` every :data:`BEAT_S` seconds and deletes it
on a clean stop; a process killed outright stops refreshing and is reported ``stale`` after
:data:`STALE_S`, then dropped by the next beat of any process after :data:`FORGET_S`.
``GET /status/services`` and the dashboard's overview read it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, select, update

from earthkeep import __version__
from earthkeep.catalog.db import translate_errors
from earthkeep.catalog.tables import ServiceInstance, utcnow
from earthkeep.runtime import Services

log = structlog.get_logger(__name__)

BEAT_S = 15.0
STALE_S = 60.0
FORGET_S = 24 * 3600.0


def register(services: Services, roles: Sequence[str]) -> str:
    """Insert this process's row; its id."""
    instance_id = str(uuid.uuid4())
    now = utcnow()
    with translate_errors("instances"), services.sessions.begin() as s:
        s.add(ServiceInstance(id=instance_id, host=socket.gethostname(), pid=os.getpid(), roles=list(roles),
                              version=__version__, started_at=now, seen_at=now))
    return instance_id


def beat(services: Services, instance_id: str) -> None:
    now = utcnow()
    with translate_errors("instances"), services.sessions.begin() as s:
        s.execute(update(ServiceInstance).where(ServiceInstance.id == instance_id).values(seen_at=now))
        s.execute(delete(ServiceInstance).where(ServiceInstance.seen_at < now - timedelta(seconds=FORGET_S)))


def unregister(services: Services, instance_id: str) -> None:
    with translate_errors("instances"), services.sessions.begin() as s:
        s.execute(delete(ServiceInstance).where(ServiceInstance.id == instance_id))


def listing(services: Services) -> list[dict[str, Any]]:
    """Every known process, newest first, with ``alive`` (seen within :data:`STALE_S`)."""
    now = utcnow()
    with translate_errors("instances"), services.sessions() as s:
        rows = list(s.scalars(select(ServiceInstance).order_by(ServiceInstance.started_at.desc())))
    return [{"id": r.id, "host": r.host, "pid": r.pid, "roles": r.roles, "version": r.version,
             "started_at": r.started_at.isoformat(), "seen_at": r.seen_at.isoformat(),
             "alive": (now - r.seen_at).total_seconds() <= STALE_S} for r in rows]


async def heartbeat(services: Services, roles: Sequence[str], stop: asyncio.Event) -> None:
    """Register, beat until ``stop``, unregister; a failed beat is logged and retried at the next."""
    instance_id = await asyncio.to_thread(register, services, roles)
    try:
        while True:
            try:
                await asyncio.wait_for(stop.wait(), timeout=BEAT_S)
                return
            except TimeoutError:
                try:
                    await asyncio.to_thread(beat, services, instance_id)
                except Exception as exc:  # the catalog may be away for a while: keep serving
                    log.warning("instances.beat_failed", error=str(exc))
    finally:
        try:
            await asyncio.to_thread(unregister, services, instance_id)
        except Exception as exc:
            log.warning("instances.unregister_failed", error=str(exc))
