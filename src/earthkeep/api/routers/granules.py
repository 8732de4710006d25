"""Granules and the task broker: recent files, failures, tasks; processors claim and finish tasks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from earthkeep.api.deps import ReadDep, ServicesDep, SessionDep, require
from earthkeep.api.params import IdPath
from earthkeep.catalog.tables import ApiKey
from earthkeep.errors import NotFound
from earthkeep.granules import tasks as task_queue
from earthkeep.granules.gatherer import GATHERER_KEY
from earthkeep.granules.outbox import recent
from earthkeep.granules.records import failures
from earthkeep.granules.settings import ViirsSettings

router = APIRouter(tags=["granules"])
NodeDep = Annotated[ApiKey, Depends(require("node"))]


class ClaimIn(BaseModel):
    node: str | None = Field(None, max_length=200, description="processor name (default: the API key's name)")
    product: str | None = Field(None, max_length=40)
    direction: str | None = Field(None, pattern="^(ascending|descending|unknown)$")


class FinishIn(BaseModel):
    node: str | None = Field(None, max_length=200)
    error: str | None = Field(None, max_length=4000)
    retry: bool = False


def _lease(services: Any) -> float:
    return float(services.settings.of(ViirsSettings).task_lease_s)


@router.get("/granules/messages")
def messages(session: SessionDep, _: ReadDep, subject: str | None = None,
             limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """The newest file and dataset messages (outbox), newest first."""
    return [{"id": m.id, "subject": m.subject, "type": m.type, "data": m.data, "created_at": m.created_at,
             "sent_at": m.sent_at} for m in recent(session, subject=subject, limit=limit)]


@router.get("/granules/gatherer")
async def gatherer(services: ServicesDep, _: ReadDep) -> dict[str, Any]:
    """The segment gatherer's open slots, as the granules role last saved them (every status interval)."""
    import json


    try:
        return dict(json.loads(await services.store.get(GATHERER_KEY)))
    except NotFound:
        return {"updated_at": None, "dropped": 0, "slots": [],
                "note": "no granules role has saved its gatherer yet (earthkeep serve --role granules)"}


@router.get("/granules/failures")
def failed_files(session: SessionDep, _: ReadDep,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """Files that failed verification and when they will be tried again."""
    return [{"name": f.name, "url": f.url, "attempts": f.attempts, "error": f.error, "last_at": f.last_at,
             "retry_after": f.retry_after} for f in failures(session, limit)]


@router.get("/tasks")
def tasks(session: SessionDep, _: ReadDep, status: str | None = None, product: str | None = None,
          direction: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """Tasks in queue order."""
    rows = task_queue.list_tasks(session, status=status, product=product, direction=direction, limit=limit)
    return [task_queue.task_dict(t) for t in rows]


@router.get("/tasks/status")
def tasks_status(session: SessionDep, _: ReadDep) -> dict[str, Any]:
    return task_queue.status_counts(session)


@router.post("/tasks/claim", responses={204: {"description": "no task is queued"}})
def claim(body: ClaimIn, session: SessionDep, services: ServicesDep, key: NodeDep) -> Any:
    """Take the oldest queued task (of a product and direction when given); 204 when none."""
    task = task_queue.claim(session, body.node or key.name, product=body.product, direction=body.direction,
                        lease_s=_lease(services))
    if task is None:
        return Response(status_code=204)
    return task_queue.task_dict(task)


@router.post("/tasks/{task_id}/complete")
def complete(task_id: IdPath, session: SessionDep, key: NodeDep, body: FinishIn | None = None) -> dict[str, Any]:
    node = (body.node if body and body.node else None) or key.name
    return task_queue.task_dict(task_queue.complete(session, task_id, node))


@router.post("/tasks/{task_id}/fail")
def fail(task_id: IdPath, body: FinishIn, session: SessionDep, key: NodeDep) -> dict[str, Any]:
    """Record a failure; ``retry: true`` puts the task back at its place in the queue."""
    return task_queue.task_dict(task_queue.fail(session, task_id, body.node or key.name, body.error or "failed",
                                        retry=body.retry))
