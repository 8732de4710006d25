"""Requests: one acquisition job per month, then one ``etl_processing`` job when all are done.

``submit`` enqueues an acquisition job per month (``laads_download`` or
``earth_engine_export``) on the shared job queue, deduplicated per area and
month, and records a request. Each acquisition job records what it produced
(:func:`record_input`); the one that completes a request enqueues its
``etl_processing`` job. Both steps take a lock on the area row (``BEGIN
IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` on PostgreSQL), so with any
number of workers exactly the last one sees the request complete. The
``nightlights_sweep`` job (every 5 minutes) starts processing whose trigger was
lost, e.g. when a worker died holding the last acquisition job.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from earthkeep.catalog.db import is_sqlite, session_factory, translate_errors
from earthkeep.catalog.tables import Job, utcnow
from earthkeep.errors import InvalidInput, NotFound
from earthkeep.nightlights.months import month_range, months_between
from earthkeep.nightlights.settings import NightlightsSettings
from earthkeep.nightlights.state import EARTH_ENGINE, ETL, LAADS, SWEEP
from earthkeep.nightlights.state import state as nl_state
from earthkeep.nightlights.tables import Area, Input, Request, Result

if TYPE_CHECKING:
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)

__all__ = ["EARTH_ENGINE", "ETL", "LAADS", "SWEEP"]  # the kind names, declared by the domain
UPLOAD = "upload"
SOURCE_ALIASES = {"laads": LAADS, LAADS: LAADS, "earth_engine": EARTH_ENGINE, "earthengine": EARTH_ENGINE,
                  "ee": EARTH_ENGINE, EARTH_ENGINE: EARTH_ENGINE}
ACQUIRE_PRIORITY = 10
TERMINAL = ("completed", "failed", "cancelled")


def nl_settings(services: Services) -> NightlightsSettings:
    """The domain's settings (``services.use_settings`` replaces them, for tests and tools)."""
    return services.settings.of(NightlightsSettings)


def resolve_source(name: str | None, settings: NightlightsSettings) -> str:
    if name is None:
        return settings.default_source
    try:
        return SOURCE_ALIASES[name.strip().lower()]
    except KeyError:
        raise InvalidInput(f"unknown source {name!r}; use laads_download or earth_engine_export") from None


def locked(services: Services) -> Session:
    """A write session serialised per database (SQLite) or per area row (PostgreSQL, see :func:`lock_area`)."""
    state = nl_state(services)
    if state.locked_sessions is None:
        opts = {"sqlite_begin": "IMMEDIATE"} if is_sqlite(services.engine) else {}
        state.locked_sessions = session_factory(services.engine.execution_options(**opts))
    return state.locked_sessions()


def lock_area(s: Session, area_id: int) -> Area:
    area = s.scalars(select(Area).where(Area.id == area_id).with_for_update()).one_or_none()
    if area is None:
        raise NotFound(f"no area {area_id}")
    return area


def acquisition_key(kind: str, area_id: int, month: str) -> str:
    return f"nightlights:{kind}:{area_id}:{month}"


def submit(services: Services, area_id: int, start: str, end: str, *, source: str | None = None,
           trace_id: str | None = None) -> Request:
    """Queue the acquisition of every month from ``start`` to ``end``; processing follows by itself."""
    settings = nl_settings(services)
    months = month_range(start, end, max_months=settings.max_months)
    kind = resolve_source(source, settings)
    with translate_errors("nightlights"), services.sessions() as s:
        if s.get(Area, area_id) is None:
            raise NotFound(f"no area {area_id}")
    ids = [services.queue.enqueue(kind, {"area_id": area_id, "month": m},
                                  dedupe_key=acquisition_key(kind, area_id, m), priority=ACQUIRE_PRIORITY,
                                  trace_id=trace_id).job.id for m in months]
    request = open_request(services, area_id, kind, months, ids, trace_id)
    log.info("nightlights.submitted", request_id=request.id, area_id=area_id, source=kind,
             months=len(months), trace_id=trace_id)
    return request


def open_request(services: Services, area_id: int, source: str, months: list[str], job_ids: list[int],
                  trace_id: str | None) -> Request:
    with translate_errors("nightlights"), locked(services) as s:
        lock_area(s, area_id)
        req = Request(area_id=area_id, source=source, start_month=months[0], end_month=months[-1],
                      acquisition_job_ids=job_ids, created_at=utcnow(), trace_id=trace_id)
        s.add(req)
        s.flush()
        ready = _is_ready(s, req)
        s.commit()
    if ready:
        start_etl(services, [req.id])
    return get_request(services, req.id)


def record_input(services: Services, area_id: int, month: str, source: str, *, job_id: int | None,
                 files: Iterable[str] = (), error: str | None = None,
                 details: dict[str, Any] | None = None) -> list[int]:
    """Record an acquisition's outcome; start the processing of requests it completes."""
    with translate_errors("nightlights"), locked(services) as s:
        try:
            lock_area(s, area_id)
        except NotFound:
            return []
        row = s.scalars(select(Input).where(Input.area_id == area_id, Input.month == month,
                                            Input.source == source)).one_or_none()
        if row is None:
            row = Input(area_id=area_id, month=month, source=source)
            s.add(row)
        row.status, row.files, row.error = ("failed" if error else "ready"), list(files), error
        row.details, row.job_id, row.updated_at = dict(details or {}), job_id, utcnow()
        s.flush()
        waiting = s.scalars(select(Request).where(Request.area_id == area_id, Request.source == source,
                                                  Request.etl_job_id.is_(None))).all()
        ready = [r.id for r in waiting if r.start_month <= month <= r.end_month and _is_ready(s, r)]
        s.commit()
    return start_etl(services, ready)


def _is_ready(s: Session, req: Request) -> bool:
    """Every acquisition job of ``req`` has recorded its outcome."""
    if not req.acquisition_job_ids:
        return True
    done = set(s.scalars(select(Input.job_id).where(Input.area_id == req.area_id, Input.source == req.source,
                                                    Input.job_id.in_(req.acquisition_job_ids))))
    return done >= set(req.acquisition_job_ids)


def start_etl(services: Services, request_ids: Iterable[int]) -> list[int]:
    """Enqueue the ``etl_processing`` job of each request (once per request)."""
    started = []
    for rid in request_ids:
        with translate_errors("nightlights"), services.sessions() as s:
            req = s.get(Request, rid)
            if req is None or req.etl_job_id is not None:
                continue
            trace_id = req.trace_id
        job = services.queue.enqueue(ETL, {"request_id": rid}, dedupe_key=f"nightlights:{ETL}:{rid}",
                                     trace_id=trace_id).job
        with translate_errors("nightlights"), services.sessions() as s:
            req = s.get(Request, rid)
            if req is not None and req.etl_job_id is None:
                req.etl_job_id = job.id
                s.commit()
        started.append(job.id)
        log.info("nightlights.etl_enqueued", request_id=rid, job_id=job.id)
    return started


def sweep(services: Services) -> list[int]:
    """Start the processing of requests whose acquisition jobs have all ended but no trigger fired."""
    with translate_errors("nightlights"), services.sessions() as s:
        waiting = s.scalars(select(Request).where(Request.etl_job_id.is_(None))).all()
        due = []
        for req in waiting:
            ids = list(req.acquisition_job_ids or [])
            statuses = set(s.scalars(select(Job.status).where(Job.id.in_(ids)))) if ids else set()
            if _is_ready(s, req) or (statuses and statuses <= set(TERMINAL)):
                due.append(req.id)
    return start_etl(services, due)


def get_request(services: Services, request_id: int) -> Request:
    with translate_errors("nightlights"), services.sessions() as s:
        req = s.get(Request, request_id)
        if req is None:
            raise NotFound(f"no nightlights request {request_id}")
        return req


def list_requests(services: Services, *, area_id: int | None = None, limit: int = 50) -> list[Request]:
    stmt = select(Request).order_by(Request.id.desc()).limit(limit)
    if area_id is not None:
        stmt = stmt.where(Request.area_id == area_id)
    with translate_errors("nightlights"), services.sessions() as s:
        return list(s.scalars(stmt))


def request_status(services: Services, request_id: int) -> dict[str, Any]:
    """The request with every job's status and error, per month, and an overall status."""
    req = get_request(services, request_id)
    ids = [*req.acquisition_job_ids, *([req.etl_job_id] if req.etl_job_id else [])]
    months = months_between(req.start_month, req.end_month)
    with translate_errors("nightlights"), services.sessions() as s:
        jobs = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(ids)))} if ids else {}
        inputs = {i.month: i for i in s.scalars(select(Input).where(
            Input.area_id == req.area_id, Input.source == req.source, Input.month.in_(months)))}
        results = set(s.scalars(select(Result.month).where(Result.area_id == req.area_id,
                                                           Result.month.in_(months))))
    acq = [jobs.get(i) for i in req.acquisition_job_ids]
    etl = jobs.get(req.etl_job_id) if req.etl_job_id else None
    per_month = []
    for i, m in enumerate(months):
        job = acq[i] if i < len(acq) else None
        inp = inputs.get(m)
        per_month.append({"month": m, "acquisition": job_view(job), "input": inp.status if inp else None,
                          "input_error": inp.error if inp else None, "result": m in results})
    return {
        "id": req.id, "area_id": req.area_id, "source": req.source, "start_month": req.start_month,
        "end_month": req.end_month, "created_at": req.created_at.isoformat(), "trace_id": req.trace_id,
        "status": overall_status([j for j in acq if j is not None], etl),
        "etl_processing": job_view(etl), "months": per_month,
    }


def job_view(job: Job | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {"id": job.id, "kind": job.kind, "status": job.status, "attempts": job.attempts,
            "max_attempts": job.max_attempts, "error": job.error, "result": job.result,
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None}


def overall_status(acquisitions: list[Job], etl: Job | None) -> str:
    """pending, running, completed, failed (or cancelled) for a whole request."""
    if etl is not None and etl.status in TERMINAL:
        return etl.status
    if etl is None and acquisitions and all(j.status == "pending" and j.attempts == 0 for j in acquisitions):
        return "pending"
    if etl is None and not acquisitions:
        return "pending"
    return "running"
