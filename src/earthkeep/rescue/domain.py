"""The rescue domain's hooks: job kinds, schedules, its settings and state as the services see them.

Job kinds: ``rescue.discover`` (list the portal, keep it, then rank and queue a
probe), ``rescue.probe`` (HEAD sizes, scrape landing pages), ``rescue.rank``
(recompute priorities), ``rescue.reap`` (expired leases back to the pool) and
``rescue.self`` (the server rescues into its own store, see
:mod:`earthkeep.rescue.selfnode`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from earthkeep.domain import Domain, DomainContext
from earthkeep.rescue.settings import RescueSettings, rescue_settings
from earthkeep.scheduler import Schedule

if TYPE_CHECKING:
    from earthkeep.config import Settings
    from earthkeep.jobs.handlers import JobContext
    from earthkeep.runtime import Services

DISCOVER, PROBE, RANK, REAP, SELF = "rescue.discover", "rescue.probe", "rescue.rank", "rescue.reap", "rescue.self"


@dataclass
class RescueState:
    """When this process last reaped expired leases (``time.monotonic()``; the API reaps every few seconds)."""

    reaped_at: float = float("-inf")


def rank_now(services: Services) -> int:
    """Recompute every asset's priority (synchronously)."""
    from earthkeep.rescue.priority import recompute

    with services.sessions.begin() as s:
        return recompute(s, rescue_settings(services))


def discover_now(services: Services, payload: dict[str, Any] | None = None, *,
                 trace_id: str | None = None, on_page: Any = None) -> dict[str, Any]:
    """Run discovery now (blocking), then recompute priorities."""
    from earthkeep.rescue.discovery import DiscoveryRequest, discover

    s = rescue_settings(services)
    req = DiscoveryRequest.from_settings(s, payload)
    out = discover(services.sessions, s, req, allow_private=services.settings.transfer.allow_private,
                   trace_id=trace_id, on_page=on_page)
    out["ranked"] = rank_now(services)
    return out


async def discover_job(ctx: JobContext) -> dict[str, Any]:
    """List a CKAN portal (full or incremental, optional gone-sweep), rank, and queue a probe."""
    out = await asyncio.to_thread(discover_now, ctx.services, ctx.payload, trace_id=ctx.job.trace_id)
    ctx.services.queue.enqueue(PROBE, {}, dedupe_key="rescue.probe", trace_id=ctx.job.trace_id)
    return out


async def probe_job(ctx: JobContext) -> dict[str, Any]:
    """Probe a batch of unprobed assets; queue the next batch while there are more."""
    from earthkeep.rescue.probe import probe_assets

    s = rescue_settings(ctx.services)
    out = await probe_assets(ctx.services.sessions, s, allow_private=ctx.services.settings.transfer.allow_private,
                             limit=ctx.payload.get("limit"))
    out["ranked"] = await asyncio.to_thread(rank_now, ctx.services)
    if out["probed"] >= (ctx.payload.get("limit") or s.probe_batch):
        ctx.services.queue.enqueue(PROBE, ctx.payload, dedupe_key="rescue.probe.next", trace_id=ctx.job.trace_id)
    return out


async def rank_job(ctx: JobContext) -> dict[str, Any]:
    """Recompute every asset's priority."""
    return {"changed": await asyncio.to_thread(rank_now, ctx.services)}


def reap_now(services: Services) -> int:
    from earthkeep.rescue.allocation import reap

    with services.sessions.begin() as s:
        return reap(s)


async def reap_job(ctx: JobContext) -> dict[str, Any]:
    """Expire leases without heartbeat; their assets go back to the pool."""
    return {"expired": await asyncio.to_thread(reap_now, ctx.services)}


async def self_job(ctx: JobContext) -> dict[str, Any]:
    """Rescue into the server's own store for a few rounds."""
    from earthkeep.rescue.selfnode import rescue_here

    return await rescue_here(ctx.services, rounds=int(ctx.payload.get("rounds", 1)),
                             capacity_bytes=ctx.payload.get("capacity_bytes"))


def register(ctx: DomainContext[Any, Any]) -> None:
    r = ctx.registry
    r.register(DISCOVER, discover_job, max_attempts=3, timeout_s=6 * 3600,
               description="list a CKAN portal into the rescue catalog")
    r.register(PROBE, probe_job, max_attempts=3, timeout_s=3600, description="HEAD sizes, scrape landing pages")
    r.register(RANK, rank_job, max_attempts=3, timeout_s=3600, description="recompute rescue priorities")
    r.register(REAP, reap_job, max_attempts=3, timeout_s=600, description="expire rescue leases",
               housekeeping=True)
    r.register(SELF, self_job, max_attempts=2, timeout_s=24 * 3600, description="rescue into our own store")


def schedules(settings: Settings) -> list[Schedule]:
    s = settings.of(RescueSettings)
    return [Schedule("rescue-discover", s.discover_schedule, DISCOVER),
            Schedule("rescue-sweep", s.sweep_schedule, DISCOVER, {"sweep": True}),
            Schedule("rescue-rank", s.rank_schedule, RANK),
            Schedule("rescue-reap", s.reap_schedule, REAP)]


DOMAIN: Domain[RescueSettings, RescueState] = Domain(
    "rescue", register, settings=RescueSettings, tables=("earthkeep.rescue.tables",),
    job_kinds=(DISCOVER, PROBE, RANK, REAP, SELF), schedules=lambda ctx: schedules(ctx.settings),
    state=lambda ctx: RescueState(), router="earthkeep.api.routers.rescue:router",
    cli={"rescue": "earthkeep.cli.rescue:app"},
)
