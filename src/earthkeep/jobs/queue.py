"""The durable job queue in the catalog database.

A job is claimed under a lease (owner + expiry). The owner extends the lease
with heartbeats; when a worker dies, ``reap_expired`` returns its jobs to the
queue (or fails them once their attempts are spent). Completion and failure are
accepted only from the current lease owner, so a job whose lease was lost and
re-claimed completes exactly once.

Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and ``BEGIN IMMEDIATE`` on
SQLite (one writer at a time), both with ``UPDATE ... RETURNING``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, bindparam, case, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from earthkeep.catalog.cursor import decode_cursor, encode_cursor
from earthkeep.catalog.db import is_sqlite, session_factory, translate_errors
from earthkeep.catalog.tables import Job, utcnow
from earthkeep.errors import Conflict, InvalidInput, NotFound
from earthkeep.jobs.handlers import HandlerRegistry

log = structlog.get_logger(__name__)

JOB_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
MAX_BACKOFF_S = 3600.0


def _claim_statement(with_kinds: bool) -> Any:
    """``UPDATE jobs ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING *``, built once."""
    jobs = Job.__table__
    pick = (select(jobs.c.id).where(jobs.c.status == "pending", jobs.c.run_after <= bindparam("now"))
            .order_by(jobs.c.priority.desc(), jobs.c.id).limit(bindparam("lim"))
            .with_for_update(skip_locked=True))
    if with_kinds:
        pick = pick.where(jobs.c.kind.in_(bindparam("kinds", expanding=True)))
    return (update(jobs).where(jobs.c.id.in_(pick.scalar_subquery()))
            .values(status="running", lease_owner=bindparam("owner"), lease_expires_at=bindparam("until"),
                    heartbeat_at=bindparam("now"), started_at=bindparam("now"), attempts=jobs.c.attempts + 1)
            .returning(*jobs.columns))


_T = Job.__table__
_CLAIM = {False: _claim_statement(False), True: _claim_statement(True)}
_HEARTBEAT = (update(_T).where(_T.c.id == bindparam("job_id"), _T.c.lease_owner == bindparam("owner"),
                               _T.c.status == "running")
              .values(lease_expires_at=bindparam("until"), heartbeat_at=bindparam("now")))
_COMPLETE = (update(_T).where(_T.c.id == bindparam("job_id"), _T.c.lease_owner == bindparam("owner"),
                              _T.c.status == "running")
             .values(status="completed", finished_at=bindparam("now"), result=bindparam("p_result"),
                     lease_expires_at=None))


@dataclass(frozen=True)
class Enqueued:
    job: Job
    created: bool


class JobQueue:
    """Operations on the ``jobs`` table; safe for many processes at once."""

    def __init__(
        self, engine: Engine, *, registry: HandlerRegistry | None = None,
        default_max_attempts: int = 5, backoff_base_s: float = 5.0,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.sessions: sessionmaker[Session] = session_factory(engine)
        self.default_max_attempts = default_max_attempts
        self.backoff_base_s = backoff_base_s
        opts = {"sqlite_begin": "IMMEDIATE"} if is_sqlite(engine) else {}
        self._write_engine = engine.execution_options(**opts)
        self._autocommit = None if is_sqlite(engine) else engine.execution_options(isolation_level="AUTOCOMMIT")
        self._writes: sessionmaker[Session] = session_factory(self._write_engine)

    def _write(self) -> Session:
        """A session whose transaction takes the SQLite write lock up front."""
        return self._writes()

    def _conn(self) -> AbstractContextManager[Connection]:
        """Where the hot paths (claim, heartbeat, complete) run their one statement.

        On PostgreSQL in autocommit: each is a single atomic ``UPDATE``, so a
        transaction around it would only add two round trips. On SQLite inside
        ``BEGIN IMMEDIATE``.
        """
        if self._autocommit is not None:
            return self._autocommit.connect()
        return self._write_engine.begin()

    # -- enqueue ---------------------------------------------------------------
    def enqueue(
        self, kind: str, payload: dict[str, Any] | None = None, *, dedupe_key: str | None = None,
        priority: int = 0, run_after: datetime | None = None, max_attempts: int | None = None,
        trace_id: str | None = None,
    ) -> Enqueued:
        """Add a job; with ``dedupe_key``, an active job with that key is returned instead.

        With a registry, an unknown ``kind`` raises :class:`InvalidInput` and the
        kind's own ``max_attempts`` applies unless one is given.
        """
        if self.registry is not None:
            max_attempts = max_attempts or self.registry.get(kind).max_attempts
        job = Job(kind=kind, payload=dict(payload or {}), dedupe_key=dedupe_key, priority=priority,
                  status="pending", attempts=0, max_attempts=max_attempts or self.default_max_attempts,
                  run_after=run_after or utcnow(), created_at=utcnow(), trace_id=trace_id)
        with translate_errors("job queue"), self._write() as s:
            if dedupe_key is not None:
                existing = self._active_by_key(s, dedupe_key)
                if existing is not None:
                    s.commit()
                    return Enqueued(existing, False)
            s.add(job)
            s.commit()
        log.info("job.enqueued", job_id=job.id, kind=kind, dedupe_key=dedupe_key, trace_id=trace_id)
        return Enqueued(job, True)

    @staticmethod
    def _active_by_key(s: Session, key: str) -> Job | None:
        stmt = select(Job).where(Job.dedupe_key == key, Job.status.in_(("pending", "running")))
        return s.scalars(stmt).first()

    # -- claim / lease ---------------------------------------------------------
    def claim(
        self, owner: str, *, kinds: Iterable[str] | None = None, limit: int = 1, lease_s: float = 60.0
    ) -> list[Job]:
        """Take up to ``limit`` due pending jobs (highest priority first) under a lease."""
        now = utcnow()
        params: dict[str, Any] = {"owner": owner, "now": now, "until": now + timedelta(seconds=lease_s),
                                  "lim": limit}
        if kinds is not None:
            params["kinds"] = list(kinds)
        with translate_errors("job queue"), self._conn() as conn:
            rows = conn.execute(_CLAIM[kinds is not None], params)
            jobs = [Job(**row._mapping) for row in rows]
        jobs.sort(key=lambda j: (-j.priority, j.id))
        return jobs

    def heartbeat(self, job_id: int, owner: str, lease_s: float) -> bool:
        """Extend a lease; False when the lease was lost or the job cancelled."""
        now = utcnow()
        params = {"job_id": job_id, "owner": owner, "now": now, "until": now + timedelta(seconds=lease_s)}
        with translate_errors("job queue"), self._conn() as conn:
            return conn.execute(_HEARTBEAT, params).rowcount == 1

    def reap_expired(self) -> int:
        """Return jobs whose lease expired to the queue (or fail them when attempts are spent)."""
        now = utcnow()
        spent = Job.attempts >= Job.max_attempts
        stmt = (update(Job).where(Job.status == "running", Job.lease_expires_at < now)
                .values(status=case((spent, "failed"), else_="pending"),
                        error=func.coalesce(Job.error, "") + "lease expired (worker " +
                        func.coalesce(Job.lease_owner, "?") + " lost); ",
                        finished_at=case((spent, now), else_=None),
                        lease_owner=None, lease_expires_at=None, run_after=now)
                .execution_options(synchronize_session=False))
        with translate_errors("job queue"), self._write() as s:
            n = s.execute(stmt).rowcount
            s.commit()
        if n:
            log.warning("job.leases_reaped", count=n)
        return n

    # -- finish ----------------------------------------------------------------
    def complete(self, job_id: int, owner: str, result: dict[str, Any] | None = None) -> bool:
        """Mark done; False (and nothing changed) when ``owner`` no longer holds the lease."""
        params = {"job_id": job_id, "owner": owner, "now": utcnow(), "p_result": result}
        with translate_errors("job queue"), self._conn() as conn:
            return conn.execute(_COMPLETE, params).rowcount == 1

    def complete_many(self, owner: str, done: Sequence[tuple[int, dict[str, Any] | None]]) -> set[int]:
        """Complete several jobs in one transaction; return the ids whose lease ``owner`` still held."""
        if not done:
            return set()
        now = utcnow()
        params = [{"job_id": i, "owner": owner, "now": now, "p_result": r} for i, r in done]
        with translate_errors("job queue"), self._write_engine.begin() as conn:
            n = conn.execute(_COMPLETE, params).rowcount
        ids = [i for i, _ in done]
        if n == len(done):
            return set(ids)
        stmt = select(Job.id).where(Job.id.in_(ids), Job.status == "completed", Job.lease_owner == owner,
                                    Job.finished_at == now)
        with translate_errors("job queue"), self.sessions() as s:
            return set(s.scalars(stmt))

    def fail(self, job_id: int, owner: str, error: str, *, retryable: bool = True) -> str | None:
        """Record a failure; retry later with exponential backoff while attempts remain.

        Returns the new status (``pending`` or ``failed``), or None when the lease was lost.
        """
        with translate_errors("job queue"), self._write() as s:
            job = s.get(Job, job_id)
            if job is None or job.status != "running" or job.lease_owner != owner:
                s.commit()
                return None
            again = retryable and job.attempts < job.max_attempts
            job.status = "pending" if again else "failed"
            job.error = error[:4000]
            job.lease_owner, job.lease_expires_at = None, None
            job.run_after = utcnow() + timedelta(seconds=self.backoff(job.attempts)) if again else job.run_after
            job.finished_at = None if again else utcnow()
            s.commit()
            return job.status

    def backoff(self, attempts: int) -> float:
        """Delay before the next attempt: base * 2^(attempts-1), +-20 % jitter, capped at one hour."""
        raw = self.backoff_base_s * (2 ** max(attempts - 1, 0))
        return min(MAX_BACKOFF_S, raw) * random.uniform(0.8, 1.2)

    # -- operator actions ------------------------------------------------------
    def cancel(self, job_id: int) -> Job:
        """Cancel a pending or running job (a running one stops at its next heartbeat)."""
        with translate_errors("job queue"), self._write() as s:
            job = self._get(s, job_id)
            if job.status not in ("pending", "running"):
                raise Conflict(f"job {job_id} is {job.status}; only pending or running jobs can be cancelled")
            job.status, job.finished_at = "cancelled", utcnow()
            s.commit()
        log.info("job.cancelled", job_id=job_id)
        return job

    def retry(self, job_id: int) -> Job:
        """Put a failed or cancelled job back in the queue with fresh attempts."""
        with translate_errors("job queue"), self._write() as s:
            job = self._get(s, job_id)
            if job.status not in ("failed", "cancelled"):
                raise Conflict(f"job {job_id} is {job.status}; only failed or cancelled jobs can be retried")
            if job.dedupe_key and self._active_by_key(s, job.dedupe_key) is not None:
                raise Conflict(f"another active job has dedupe key {job.dedupe_key!r}")
            job.status, job.attempts, job.run_after = "pending", 0, utcnow()
            job.finished_at, job.lease_owner, job.lease_expires_at = None, None, None
            s.commit()
        return job

    @staticmethod
    def _get(s: Session, job_id: int) -> Job:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    def get(self, job_id: int) -> Job:
        with translate_errors("job queue"), self.sessions() as s:
            return self._get(s, job_id)

    def list(
        self, *, status: str | None = None, kind: str | None = None, limit: int = 100, cursor: str | None = None,
        exclude_kinds: Sequence[str] = (),
    ) -> tuple[list[Job], str | None]:
        """Jobs newest first, with a cursor to the next page (``exclude_kinds``: leave these kinds out)."""
        if status is not None and status not in JOB_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(JOB_STATUSES)}, got {status!r}")
        stmt = select(Job).order_by(Job.id.desc()).limit(limit + 1)
        if status:
            stmt = stmt.where(Job.status == status)
        if kind:
            stmt = stmt.where(Job.kind == kind)
        if exclude_kinds:
            stmt = stmt.where(Job.kind.not_in(list(exclude_kinds)))
        after = decode_cursor(cursor)
        if after is not None:
            stmt = stmt.where(Job.id < int(after.get("id", 0)))
        with translate_errors("job queue"), self.sessions() as s:
            rows = list(s.scalars(stmt))
        nxt = encode_cursor({"id": rows[limit - 1].id}) if len(rows) > limit else None
        return rows[:limit], nxt

    def counts(self, *, exclude_kinds: Sequence[str] = ()) -> dict[str, int]:
        """Number of jobs per status (``exclude_kinds``: leave these kinds out)."""
        stmt = select(Job.status, func.count()).group_by(Job.status)
        if exclude_kinds:
            stmt = stmt.where(Job.kind.not_in(list(exclude_kinds)))
        with translate_errors("job queue"), self.sessions() as s:
            rows = s.execute(stmt).all()
        out = dict.fromkeys(JOB_STATUSES, 0)
        out.update({status: int(n) for status, n in rows})
        return out

    def wait_idle_ids(self, ids: Sequence[int]) -> dict[int, str]:
        """Statuses of the given jobs (used by tests and the CLI to wait for work)."""
        with translate_errors("job queue"), self.sessions() as s:
            return dict(s.execute(select(Job.id, Job.status).where(Job.id.in_(list(ids)))).all())
