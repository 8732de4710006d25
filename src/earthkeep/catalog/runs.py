"""The run ledger: one row per collection run of a source."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from earthkeep.catalog.tables import Run, utcnow
from earthkeep.errors import InvalidInput, NotFound

RUN_STATUSES = ("running", "completed", "failed", "skipped")
INTERRUPTED = "interrupted: the worker running this attempt was lost"


def start_run(
    session: Session, source: str, *, collection: str | None = None,
    job_id: int | None = None, trace_id: str | None = None,
) -> Run:
    run = Run(id=str(uuid.uuid4()), source=source, collection=collection, status="running",
              started_at=utcnow(), job_id=job_id, trace_id=trace_id, details={})
    session.add(run)
    session.flush()
    return run


def close_interrupted(session: Session, source: str, collection: str | None, job_id: int) -> list[str]:
    """Close as failed the runs of ``job_id`` still ``running``: their worker died (one attempt runs at a time)."""
    stale = session.scalars(select(Run.id).where(Run.job_id == job_id, Run.source == source,
                                                 Run.collection == collection, Run.status == "running")).all()
    for run_id in stale:
        finish_run(session, run_id, "failed", error=INTERRUPTED)
    return list(stale)


def finish_run(
    session: Session, run_id: str, status: str, *, records: int = 0, nbytes: int = 0,
    failed: int = 0, error: str | None = None, details: dict[str, Any] | None = None,
) -> Run:
    if status not in RUN_STATUSES[1:]:
        raise InvalidInput(f"run status must be one of {RUN_STATUSES[1:]}, got {status!r}")
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    run.status, run.completed_at = status, utcnow()
    run.records_collected, run.bytes_collected, run.records_failed = records, nbytes, failed
    run.error_message = error
    run.details = {**(run.details or {}), **(details or {})}
    session.flush()
    return run


def list_runs(
    session: Session, *, source: str | None = None, status: str | None = None, limit: int = 100
) -> list[Run]:
    stmt = select(Run).order_by(Run.started_at.desc()).limit(limit)
    if source:
        stmt = stmt.where(Run.source == source)
    if status:
        stmt = stmt.where(Run.status == status)
    return list(session.scalars(stmt))
