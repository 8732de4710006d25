"""The task broker: a durable queue of product tasks in the catalog.

A task's identity is (subject, platform_name, orbit_number within
``orbit_slack``, pass direction). A dataset matching a *queued* task updates
that task (earliest start, latest end, union of files) and keeps its place in
the queue (its ``id``); otherwise a new task is queued at the end. Processors
claim the oldest queued task (optionally of one product and direction) under a
lease; an expired lease puts the task back at its old place.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from earthkeep.catalog.tables import utcnow
from earthkeep.errors import Conflict, InvalidInput, NotFound
from earthkeep.granules.tables import GranuleTask

DIRECTIONS = ("ascending", "descending", "unknown")
STATUSES = ("queued", "claimed", "done", "failed")


def merge_data(queued: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The original broker's merge: min start, max end, files of both (by uid, newest wins)."""
    out = {**queued, **{k: v for k, v in new.items() if k not in ("dataset", "start_time", "end_time")}}
    out["start_time"] = min(queued["start_time"], new["start_time"])
    out["end_time"] = max(queued["end_time"], new["end_time"])
    files = {d["uid"]: d for d in queued.get("dataset", [])}
    files.update({d["uid"]: d for d in new.get("dataset", [])})
    out["dataset"] = sorted(files.values(), key=lambda d: (d.get("start_time", ""), d["uid"]))
    return out


def enqueue(session: Session, *, product: str, subject: str, data: dict[str, Any], direction: str,
            orbit_slack: int) -> tuple[GranuleTask, bool]:
    """Queue a dataset as a task, or merge it into the queued task of the same identity."""
    if direction not in DIRECTIONS:
        raise InvalidInput(f"direction must be one of {', '.join(DIRECTIONS)}")
    platform, orbit = str(data["platform_name"]), int(data["orbit_number"])
    existing = session.scalars(
        select(GranuleTask).where(
            GranuleTask.subject == subject, GranuleTask.platform_name == platform,
            GranuleTask.direction == direction, GranuleTask.status == "queued",
            GranuleTask.orbit_number.between(orbit - orbit_slack, orbit + orbit_slack))
        .order_by(func.abs(GranuleTask.orbit_number - orbit), GranuleTask.id).limit(1)
        .with_for_update()).first()
    now = utcnow()
    if existing is not None:
        existing.data = merge_data(existing.data, data)
        existing.updates += 1
        existing.updated_at = now
        session.flush()
        return existing, False
    task = GranuleTask(product=product, subject=subject, platform_name=platform, orbit_number=orbit,
                       direction=direction, status="queued", data=data, updates=0, attempts=0,
                       created_at=now, updated_at=now)
    session.add(task)
    session.flush()
    return task, True


def reap(session: Session) -> int:
    """Claimed tasks whose lease expired go back to the queue (same id, same place)."""
    now = utcnow()
    return int(session.execute(
        update(GranuleTask).where(GranuleTask.status == "claimed", GranuleTask.lease_expires_at < now)
        .values(status="queued", node=None, lease_expires_at=None, updated_at=now,
                error=func.coalesce(GranuleTask.error, "") + "lease expired; ")
        .execution_options(synchronize_session=False)).rowcount)


def claim(session: Session, node: str, *, product: str | None = None, direction: str | None = None,
          lease_s: float = 3600.0) -> GranuleTask | None:
    """The oldest queued task (of ``product`` and ``direction`` when given), now claimed by ``node``."""
    if direction is not None and direction not in DIRECTIONS:
        raise InvalidInput(f"direction must be one of {', '.join(DIRECTIONS)}")
    reap(session)
    stmt = select(GranuleTask).where(GranuleTask.status == "queued").order_by(GranuleTask.id).limit(1)
    if product:
        stmt = stmt.where(GranuleTask.product == product)
    if direction:
        stmt = stmt.where(GranuleTask.direction == direction)
    task = session.scalars(stmt.with_for_update(skip_locked=True)).first()
    if task is None:
        return None
    now = utcnow()
    task.status, task.node, task.attempts = "claimed", node[:200], task.attempts + 1
    task.lease_expires_at, task.updated_at = now + timedelta(seconds=lease_s), now
    session.flush()
    return task


def _owned(session: Session, task_id: int, node: str) -> GranuleTask:
    task = session.get(GranuleTask, task_id, with_for_update=True)
    if task is None:
        raise NotFound(f"no task {task_id}")
    if task.status != "claimed" or task.node != node:
        raise Conflict(f"task {task_id} is {task.status}" + (f" by {task.node}" if task.node else "")
                       + f"; only the node holding its claim ({node!r} does not) can finish it")
    return task


def complete(session: Session, task_id: int, node: str) -> GranuleTask:
    task = _owned(session, task_id, node)
    task.status, task.finished_at, task.lease_expires_at = "done", utcnow(), None
    task.updated_at = task.finished_at
    return task


def fail(session: Session, task_id: int, node: str, error: str, *, retry: bool = False) -> GranuleTask:
    """Record a failure: back in the queue at its old place when ``retry``, else failed."""
    task = _owned(session, task_id, node)
    now = utcnow()
    task.error = ((task.error or "") + error[:1000] + "; ")[-4000:]
    task.lease_expires_at, task.updated_at = None, now
    if retry:
        task.status, task.node = "queued", None
    else:
        task.status, task.finished_at = "failed", now
    return task


def list_tasks(session: Session, *, status: str | None = None, product: str | None = None,
               direction: str | None = None, limit: int = 100) -> list[GranuleTask]:
    """Tasks in queue order (oldest first)."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}")
    stmt = select(GranuleTask).order_by(GranuleTask.id).limit(limit)
    for col, value in ((GranuleTask.status, status), (GranuleTask.product, product),
                       (GranuleTask.direction, direction)):
        if value:
            stmt = stmt.where(col == value)
    return list(session.scalars(stmt))


def status_counts(session: Session) -> dict[str, Any]:
    """Counts per status, and queued tasks per product and direction (the periodic status message)."""
    by_status = dict.fromkeys(STATUSES, 0)
    for status, n in session.execute(select(GranuleTask.status, func.count()).group_by(GranuleTask.status)):
        by_status[status] = int(n)
    queued: dict[str, dict[str, int]] = {}
    rows = session.execute(select(GranuleTask.product, GranuleTask.direction, func.count())
                           .where(GranuleTask.status == "queued")
                           .group_by(GranuleTask.product, GranuleTask.direction))
    for product, direction, n in rows:
        queued.setdefault(product, {})[direction] = int(n)
    return {"tasks": by_status, "queued": queued}


def task_dict(task: GranuleTask) -> dict[str, Any]:
    """A task as JSON, with its posttroll message string (what processors ``Message.decode``)."""
    from earthkeep.granules.messages import encode

    return {"id": task.id, "product": task.product, "subject": task.subject, "platform_name": task.platform_name,
            "orbit_number": task.orbit_number, "direction": task.direction, "status": task.status,
            "updates": task.updates, "attempts": task.attempts, "node": task.node,
            "created_at": task.created_at, "updated_at": task.updated_at, "error": task.error,
            "data": task.data, "message": encode(task.subject, "dataset", task.data)}

