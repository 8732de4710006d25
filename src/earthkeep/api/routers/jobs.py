"""Jobs: list, inspect, enqueue (admin), cancel and retry (admin)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from earthkeep.api.deps import AdminDep, ReadDep, ServicesDep
from earthkeep.api.params import IdPath
from earthkeep.api.schemas import JobIn, JobOut, JobPageOut

router = APIRouter(tags=["jobs"])


@router.get("/jobs", response_model=JobPageOut)
async def list_jobs(
    services: ServicesDep, _: ReadDep, status: str | None = None, kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None,
) -> JobPageOut:
    rows, nxt = await asyncio.to_thread(services.queue.list, status=status, kind=kind, limit=limit, cursor=cursor)
    return JobPageOut(jobs=[JobOut.model_validate(j) for j in rows], next=nxt)


@router.get("/jobs/{job_id}", response_model=JobOut)
async def get_job(job_id: IdPath, services: ServicesDep, _: ReadDep) -> JobOut:
    return JobOut.model_validate(await asyncio.to_thread(services.queue.get, job_id))


@router.post("/jobs", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED)
async def enqueue_job(body: JobIn, request: Request, services: ServicesDep, _: AdminDep) -> JobOut:
    """Queue a job of a registered kind (unknown kinds are refused with the list of known ones)."""
    trace_id = request.scope.get("state", {}).get("trace_id")
    services.registry.check(body.kind, body.payload)  # unknown kind, bad payload, refused URL: 422, nothing queued
    res = await asyncio.to_thread(services.queue.enqueue, body.kind, body.payload, dedupe_key=body.dedupe_key,
                                  priority=body.priority, trace_id=trace_id)
    services.wake()
    return JobOut.model_validate(res.job)


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
async def cancel_job(job_id: IdPath, services: ServicesDep, _: AdminDep) -> JobOut:
    return JobOut.model_validate(await asyncio.to_thread(services.queue.cancel, job_id))


@router.post("/jobs/{job_id}/retry", response_model=JobOut)
async def retry_job(job_id: IdPath, services: ServicesDep, _: AdminDep) -> JobOut:
    return JobOut.model_validate(await asyncio.to_thread(services.queue.retry, job_id))
