"""Data rescue: the seed's ``/allocate``, ``/release``, ``/update-ckan``, ``/status`` plus nodes and ranking.

Scopes: nodes use a ``node`` key (``/nodes/register``, ``/allocate``,
``/allocations/.../heartbeat``, ``/release``); ``/update-ckan``, ``/rescue/rank``
and ``/rescue/boosts`` need ``admin``; the rest are reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from earthkeep.api.deps import ReadDep, ServicesDep, require
from earthkeep.api.params import MAX_ID, Id, IdPath, OptionalId
from earthkeep.catalog.db import translate_errors
from earthkeep.catalog.tables import ApiKey
from earthkeep.logs import current_trace_id
from earthkeep.rescue import allocation, priority, queries
from earthkeep.rescue.domain import DISCOVER, DOMAIN, RANK, reap_now, rescue_settings
from earthkeep.rescue.status import status as rescue_status
from earthkeep.runtime import Services
from earthkeep.transfer.urls import check_url_offline

router = APIRouter(tags=["rescue"])
NodeKey = Annotated[ApiKey, Depends(require("node"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]
MAX_BYTES = (1 << 63) - 1
REAP_EVERY_S = 5.0
T = TypeVar("T")


def _tx(services: Services, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with translate_errors("catalog"), services.sessions.begin() as s:
        return fn(s, *args, **kwargs)


def _maybe_reap(services: Services) -> None:
    """Expired leases go back to the pool at most every few seconds per process (and on schedule)."""
    now = time.monotonic()
    state = DOMAIN.of(services).state
    if now - state.reaped_at >= REAP_EVERY_S:
        state.reaped_at = now
        with translate_errors("catalog"):
            reap_now(services)


class DiscoverBody(BaseModel):
    portal: str | None = Field(None, max_length=300, pattern=r"^https?://")
    organizations: list[str] | None = Field(None, max_length=500)
    groups: list[str] | None = Field(None, max_length=500)
    tags: list[str] | None = Field(None, max_length=500)
    query: str | None = Field(None, max_length=1000)
    full: bool = False
    sweep: bool = False
    force: bool = False


class RegisterBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    capacity_bytes: int = Field(ge=0, le=MAX_BYTES)
    free_bytes: int | None = Field(None, ge=0, le=MAX_BYTES)
    meta: dict[str, Any] | None = None


class AllocateBody(BaseModel):
    free_bytes: int | None = Field(None, ge=0, le=MAX_BYTES)
    max_items: int | None = Field(None, ge=1, le=1000)


class HeartbeatBody(BaseModel):
    allocation_ids: list[int] | None = Field(None, max_length=10_000)
    free_bytes: int | None = Field(None, ge=0, le=MAX_BYTES)


class ReleaseBody(BaseModel):
    allocation_id: Id
    status: str = Field(pattern=r"^(done|failed)$")
    size: int | None = Field(None, ge=0, le=MAX_BYTES)
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    reason: str | None = Field(None, max_length=2000)
    upstream: bool = False
    location: str | None = Field(None, max_length=2000)


class BoostBody(BaseModel):
    dataset_id: OptionalId = None
    asset_id: OptionalId = None
    boost: float = Field(ge=-1e6, le=1e6, allow_inf_nan=False)


@router.post("/update-ckan", status_code=202)
def update_ckan(services: ServicesDep, _: AdminKey, body: DiscoverBody | None = None) -> dict[str, Any]:
    """Queue a discovery run (incremental unless ``full``; ``sweep`` also marks vanished datasets gone)."""
    payload = (body or DiscoverBody()).model_dump(exclude_none=True)
    portal = payload.get("portal") or rescue_settings(services).portal
    if "portal" in payload:  # a user-supplied URL: refused now when it is plainly private, nothing queued
        check_url_offline(portal, services.settings.transfer.allow_private)
    job = services.queue.enqueue(DISCOVER, payload, dedupe_key=f"{DISCOVER}:{portal}", trace_id=current_trace_id())
    return {"job_id": job.job.id, "created": job.created, "kind": DISCOVER, "payload": payload}


@router.get("/status")
def get_status(services: ServicesDep, _: ReadDep) -> dict[str, Any]:
    """Totals: datasets, assets, bytes, copies, in flight, and per node."""
    return _tx(services, rescue_status, rescue_settings(services))


@router.post("/nodes/register")
def register_node(body: RegisterBody, services: ServicesDep, key: NodeKey) -> dict[str, Any]:
    """Register (or update) the caller's node and its capacity."""
    node = _tx(services, allocation.register_node, key, name=body.name, capacity_bytes=body.capacity_bytes,
               free_bytes=body.free_bytes, meta=body.meta)
    return {"id": node.id, "name": node.name, "capacity_bytes": node.capacity_bytes, "free_bytes": node.free_bytes,
            "lease_s": rescue_settings(services).lease_s}


@router.post("/allocate")
def allocate(services: ServicesDep, key: NodeKey, body: AllocateBody | None = None) -> dict[str, Any]:
    """Lease the highest-priority assets that fit the node's free space (extends its other leases)."""
    body = body or AllocateBody()
    _maybe_reap(services)
    leases = _tx(services, allocation.allocate, rescue_settings(services), key, free_bytes=body.free_bytes,
                 max_items=body.max_items)
    return {"allocations": [lease.as_dict() for lease in leases], "lease_s": rescue_settings(services).lease_s}


@router.post("/allocations/heartbeat")
def heartbeat_many(services: ServicesDep, key: NodeKey, body: HeartbeatBody | None = None) -> dict[str, Any]:
    """Extend the node's leases (all active ones, or those listed); ``lost`` lists the ones it no longer has."""
    body = body or HeartbeatBody()
    return _tx(services, allocation.heartbeat, rescue_settings(services), key, body.allocation_ids,
               free_bytes=body.free_bytes)


@router.post("/allocations/{allocation_id}/heartbeat")
def heartbeat_one(allocation_id: IdPath, services: ServicesDep, key: NodeKey) -> dict[str, Any]:
    """Extend one lease."""
    return _tx(services, allocation.heartbeat, rescue_settings(services), key, [allocation_id])


@router.post("/release")
def release(body: ReleaseBody, services: ServicesDep, key: NodeKey) -> dict[str, Any]:
    """Close a lease: ``done`` with size and sha256 (cross-verified), or ``failed`` with a reason."""
    return _tx(services, allocation.release, rescue_settings(services), key, body.allocation_id,
               status=body.status, size=body.size, sha256=body.sha256, reason=body.reason, upstream=body.upstream,
               location=body.location)


@router.get("/rescue/ranking")
def ranking(services: ServicesDep, _: ReadDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
            offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0, all: bool = False) -> dict[str, Any]:
    """Assets by priority, each with the parts of its score (see docs/rescue.md)."""
    rows = _tx(services, priority.explain, rescue_settings(services), limit=limit, offset=offset, pool_only=not all)
    return {"ranking": rows, "weights": _weights(services)}


def _weights(services: Services) -> dict[str, Any]:
    s = rescue_settings(services)
    return {k: getattr(s, k) for k in type(s).model_fields if k.startswith("weight_")} | {
        "age_full_days": s.age_full_days, "replication": s.replication, "watch_orgs": s.watch_orgs}


@router.post("/rescue/rank", status_code=202)
def rank(services: ServicesDep, _: AdminKey) -> dict[str, Any]:
    """Queue a recomputation of every priority."""
    job = services.queue.enqueue(RANK, {}, dedupe_key=RANK, trace_id=current_trace_id())
    return {"job_id": job.job.id, "created": job.created}


@router.post("/rescue/boosts")
def boost(body: BoostBody, services: ServicesDep, _: AdminKey) -> dict[str, Any]:
    """Set a manual boost on a dataset or an asset and recompute priorities."""
    _tx(services, priority.set_boost, boost=body.boost, dataset_id=body.dataset_id, asset_id=body.asset_id)
    changed = _tx(services, priority.recompute, rescue_settings(services))
    return {"boost": body.boost, "dataset_id": body.dataset_id, "asset_id": body.asset_id, "changed": changed}


@router.get("/rescue/datasets/{dataset_id}")
def dataset(dataset_id: IdPath, services: ServicesDep, _: ReadDep) -> dict[str, Any]:
    """One dataset: our record, its CKAN metadata, its assets."""
    return _tx(services, queries.dataset_document, dataset_id)


@router.get("/rescue/datasets/{dataset_id}/history")
def history(dataset_id: IdPath, services: ServicesDep, _: ReadDep,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """What changed in a dataset and when, newest first."""
    return {"history": _tx(services, queries.dataset_history, dataset_id, limit=limit)}


@router.get("/rescue/assets/{asset_id}/copies")
def copies(asset_id: IdPath, services: ServicesDep, _: ReadDep) -> dict[str, Any]:
    """The copies nodes hold of an asset and whether they agree."""
    return {"copies": _tx(services, queries.asset_copies, asset_id)}
