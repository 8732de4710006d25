"""The granules domain's hooks: job kinds, schedules, and the all-in-one ``run`` loop.

Job kinds (run by any worker): ``granules.mirror`` (a run that finds its selection
locked by another returns ``skipped``), ``granules.elements`` (refresh the TLE
file) and ``granules.retention``. The :class:`~earthkeep.granules.service.Collector`
(publisher, gatherer, broker intake) runs where ``earthkeep granules run`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import structlog

from earthkeep.domain import Domain, DomainContext
from earthkeep.errors import Conflict
from earthkeep.granules.config import GranuleConfig
from earthkeep.granules.settings import GranuleSettings, MailSettings, ViirsSettings
from earthkeep.scheduler import Schedule

if TYPE_CHECKING:
    from earthkeep.config import Settings
    from earthkeep.granules.service import Collector
    from earthkeep.jobs.handlers import JobContext
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)
MIRROR_KIND, ELEMENTS_KIND, RETENTION_KIND = "granules.mirror", "granules.elements", "granules.retention"


async def mirror_job(ctx: JobContext) -> dict[str, Any]:
    """Mirror GINA NRT once (payload: optional ``backfill_days``)."""
    from earthkeep.granules.mirror import mirror

    cfg = GranuleConfig.of(ctx.services.settings)
    try:
        report = await mirror(ctx.services, cfg, backfill_days=ctx.payload.get("backfill_days"), job_id=ctx.job.id)
    except Conflict as exc:  # another run of this selection is busy: nothing to do now
        return {"skipped": str(exc)}
    return {"run_id": report.run_id, **report.summary()}


async def elements_job(ctx: JobContext) -> dict[str, Any]:
    """Fetch the orbital elements file into the store."""
    from earthkeep.granules.orbits import refresh_elements

    cfg = GranuleConfig.of(ctx.services.settings)
    return {"bytes": await refresh_elements(ctx.services, ctx.payload.get("url") or cfg.viirs.tle_url)}


async def retention_job(ctx: JobContext) -> dict[str, Any]:
    """Delete granules, messages and tasks older than VIIRS_RETENTION days."""
    from earthkeep.granules.retention import apply_retention

    cfg = GranuleConfig.of(ctx.services.settings)
    return await apply_retention(ctx.services, cfg.core.retention_days, watch_dir=cfg.viirs.watch_dir)


def register(ctx: DomainContext[Any, Any]) -> None:
    reg = ctx.registry
    reg.register(MIRROR_KIND, mirror_job, max_attempts=3, timeout_s=6 * 3600,
                 description="mirror VIIRS SDR granules from GINA NRT")
    reg.register(ELEMENTS_KIND, elements_job, max_attempts=5, timeout_s=600,
                 description="refresh the orbital elements (TLE) file")
    reg.register(RETENTION_KIND, retention_job, max_attempts=3, timeout_s=3600,
                 description="delete granules older than VIIRS_RETENTION days")


def schedules(settings: Settings) -> list[Schedule]:
    cfg = GranuleConfig.of(settings)
    return [
        Schedule("granules-mirror", cfg.viirs.mirror_schedule, MIRROR_KIND),
        Schedule("granules-elements", cfg.viirs.tle_schedule, ELEMENTS_KIND),
        Schedule("granules-retention", cfg.viirs.retention_schedule, RETENTION_KIND),
    ]


async def _once(what: str, fn: Any, collector: Collector) -> None:
    try:
        await fn()
    except Conflict as exc:
        log.info("granules.skipped", what=what, reason=str(exc))
    except Exception as exc:  # a periodic task must survive one failed round
        log.error("granules.periodic_failed", what=what, error=repr(exc))
        collector.alerts.error("mirror" if what == "mirror" else what, f"{what} failed: {exc}")


async def _every(seconds: float, what: str, fn: Any, collector: Collector) -> None:
    while True:
        await _once(what, fn, collector)
        await asyncio.sleep(seconds)


async def _sleep_then(seconds: float, what: str, fn: Any, collector: Collector) -> None:
    await asyncio.sleep(seconds)
    await _every(seconds, what, fn, collector)


async def run_collector(services: Services, collector: Collector, *, mirror_every_s: float = 300.0,
                        elements_every_s: float = 6 * 3600.0, retention_every_s: float = 86400.0,
                        stop: asyncio.Event | None = None) -> None:
    """The original container in one process: collector + periodic mirror, elements and retention."""
    from earthkeep.granules.mirror import mirror
    from earthkeep.granules.orbits import refresh_elements
    from earthkeep.granules.retention import apply_retention

    cfg = collector.cfg

    async def elements() -> None:
        await refresh_elements(services, cfg.viirs.tle_url)
        await collector.reload_elements()

    async def mirrored() -> None:
        await mirror(services, cfg, hooks=collector.hooks())

    async def retain() -> None:
        await apply_retention(services, cfg.core.retention_days, watch_dir=cfg.viirs.watch_dir)

    async with collector:
        await _once("elements", elements, collector)
        loops = [asyncio.create_task(_every(mirror_every_s, "mirror", mirrored, collector)),
                 asyncio.create_task(_every(retention_every_s, "retention", retain, collector))]
        await asyncio.sleep(0)
        loops.append(asyncio.create_task(_sleep_then(elements_every_s, "elements", elements, collector)))
        try:
            await (stop or asyncio.Event()).wait()
        finally:
            for t in loops:
                t.cancel()
            for t in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await t


DOMAIN: Domain[GranuleSettings, None] = Domain(
    "granules", register, settings=GranuleSettings, sections=(MailSettings, ViirsSettings),
    tables=("earthkeep.granules.tables",), job_kinds=(MIRROR_KIND, ELEMENTS_KIND, RETENTION_KIND),
    schedules=lambda ctx: schedules(ctx.settings),
    router="earthkeep.api.routers.granules:router",
    cli={"granules": "earthkeep.cli.granules:app", "tasks": "earthkeep.cli.granules:tasks_app"},
)
