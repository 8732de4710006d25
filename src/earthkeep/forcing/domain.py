"""Job kinds, schedules and the start-up hook of the forcing domain.

``forcing.collect`` checks the history, fills gaps, collects the latest complete
GFS forecast and the Copernicus Marine currents (each source its own run);
``forcing.cleanup`` applies retention. Both are enqueued with dedupe keys, so a
second request while one is pending or running joins it instead of doubling
the work; inside a run, file leases keep concurrent collectors apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from earthkeep.domain import Domain, DomainContext
from earthkeep.errors import SourceUnavailable
from earthkeep.forcing.settings import ForcingSettings, ForcingSourcesSettings, forcing_config
from earthkeep.scheduler import Schedule

if TYPE_CHECKING:
    from earthkeep.config import Settings
    from earthkeep.jobs.handlers import JobContext
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)
COLLECT = "forcing.collect"
CLEANUP = "forcing.cleanup"


async def collect_handler(ctx: JobContext) -> dict[str, Any]:
    """Collect GFS (history + latest forecast) then Copernicus Marine; fail (and retry later) when GFS failed."""
    from earthkeep.forcing.collect import collect_all

    cfg = forcing_config(ctx.services.settings)
    reports = await collect_all(ctx.services, cfg, now=datetime.now(UTC), history=ctx.payload.get("history", True),
                                job_id=ctx.job.id, trace_id=ctx.job.trace_id)
    result = {r.source: {"status": r.status, "run_id": r.run_id, "records": r.records, "error": r.error}
              for r in reports}
    failed = [r for r in reports if r.status == "failed"]
    if failed:
        raise SourceUnavailable("; ".join(f"{r.source}: {r.error}" for r in failed))
    return result


async def cleanup_handler(ctx: JobContext) -> dict[str, Any]:
    """Apply retention (``MAX_DATA_AGE_DAYS`` by valid time, the latest complete forecast kept)."""
    from earthkeep.forcing.retention import cleanup

    cfg = forcing_config(ctx.services.settings)
    stats = await cleanup(ctx.services, cfg, now=datetime.now(UTC), dry_run=bool(ctx.payload.get("dry_run")),
                          job_id=ctx.job.id)
    return {k: v for k, v in stats.items() if k != "files"}


def register(ctx: DomainContext[Any, Any]) -> None:
    """Register the forcing job kinds."""
    ctx.registry.register(COLLECT, collect_handler, max_attempts=3, timeout_s=6 * 3600,
                          description="collect GFS wind and Copernicus Marine currents")
    ctx.registry.register(CLEANUP, cleanup_handler, max_attempts=3, timeout_s=3600,
                          description="delete forcing files past MAX_DATA_AGE_DAYS (valid time)")


def schedules(settings: Settings) -> list[Schedule]:
    """``COLLECTION_SCHEDULE`` and ``CLEANUP_SCHEDULE`` (cron, UTC)."""
    f = settings.of(ForcingSettings)
    return [Schedule("forcing-collect", f.collection_schedule, COLLECT, {"history": True}),
            Schedule("forcing-cleanup", f.cleanup_schedule, CLEANUP, {})]


def on_startup(services: Services) -> int | None:
    """The seed's start-up: check history, fill gaps, collect the latest forecast (one job, high
    priority, deduplicated), before the schedules take over. Returns the job id, or ``None``
    when forcing is not configured (see :attr:`ForcingConfig.collect_on_start`)."""
    if not forcing_config(services.settings).collect_on_start:
        log.info("forcing.startup_skipped", reason="no forcing setting configured; FORCING_COLLECT_ON_START=true "
                                                   "collects at start")
        return None
    enq = services.queue.enqueue(COLLECT, {"history": True, "reason": "startup"}, dedupe_key="forcing:collect",
                                 priority=10)
    log.info("forcing.startup_enqueued", job_id=enq.job.id, created=enq.created)
    services.wake()
    return enq.job.id


DOMAIN: Domain[ForcingSettings, None] = Domain(
    "forcing", register, settings=ForcingSettings, sections=(ForcingSourcesSettings,),
    tables=("earthkeep.forcing.tables",), job_kinds=(COLLECT, CLEANUP),
    schedules=lambda ctx: schedules(ctx.settings), on_startup=lambda ctx: on_startup(ctx.services),
    router="earthkeep.api.routers.forcing:router",
    cli={"forcing": "earthkeep.cli.forcing:app", "cleanup": "earthkeep.cli.forcing:cleanup"},
)
