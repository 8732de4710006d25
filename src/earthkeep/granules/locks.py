"""Named leases in the catalog: a mirror of one selection never overlaps another.

A lease is taken with one ``UPDATE`` (free or expired rows) or one ``INSERT``
(new names); the unique primary key decides between two racing inserts, on
SQLite and PostgreSQL alike. The holder renews it while it works; a crashed
holder's lease expires after its TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import structlog
from sqlalchemy import Engine, delete, exc, or_, update

from earthkeep.catalog.db import session_factory, translate_errors
from earthkeep.catalog.tables import utcnow
from earthkeep.errors import Conflict
from earthkeep.granules.tables import GranuleLock

log = structlog.get_logger(__name__)


def acquire(engine: Engine, name: str, owner: str, ttl_s: float) -> bool:
    """Take or renew the lease ``name`` for ``owner``; False when someone else holds it."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl_s)
    sessions = session_factory(engine)
    with translate_errors("granule lock"), sessions.begin() as s:
        n = s.execute(update(GranuleLock).where(
            GranuleLock.name == name, or_(GranuleLock.owner == owner, GranuleLock.expires_at < now))
            .values(owner=owner, expires_at=expires, acquired_at=now)
            .execution_options(synchronize_session=False)).rowcount
    if n:
        return True
    try:
        with sessions.begin() as s:
            s.add(GranuleLock(name=name, owner=owner, expires_at=expires, acquired_at=now))
    except exc.IntegrityError:
        return False
    return True


def release(engine: Engine, name: str, owner: str) -> None:
    with translate_errors("granule lock"), session_factory(engine).begin() as s:
        s.execute(delete(GranuleLock).where(GranuleLock.name == name, GranuleLock.owner == owner))


@contextlib.asynccontextmanager
async def held(engine: Engine, name: str, ttl_s: float, owner: str | None = None) -> AsyncIterator[str]:
    """Hold the lease for the block (renewed every ttl/3) or raise :class:`Conflict` at once.

    ``owner`` defaults to a fresh id. A mirror run by the job queue passes its
    job (:func:`earthkeep.jobs.handlers.lease_owner`), so that the next attempt of a job whose worker was
    killed takes the lease over at once instead of finding it "held" until the
    TTL runs out.
    """
    owner = owner or uuid.uuid4().hex
    if not await asyncio.to_thread(acquire, engine, name, owner, ttl_s):
        raise Conflict(f"{name} is already being mirrored by another run; try again when it finishes")

    async def renew() -> None:
        while True:
            await asyncio.sleep(ttl_s / 3)
            if not await asyncio.to_thread(acquire, engine, name, owner, ttl_s):
                log.error("granules.lock_lost", lock=name)

    task = asyncio.create_task(renew())
    try:
        yield owner
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.shield(asyncio.to_thread(release, engine, name, owner))
