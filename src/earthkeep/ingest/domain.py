"""The ingest domain's hooks: the retention job kind and its schedule."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from earthkeep.ingest.runtime import ingest_settings
from earthkeep.ingest.settings import IngestSettings
from earthkeep.scheduler import Schedule

if TYPE_CHECKING:
    from earthkeep.config import Settings
    from earthkeep.jobs.handlers import JobContext
    from earthkeep.runtime import Services

RETENTION_KIND = "ingest.retention"


async def retention_job(ctx: JobContext) -> dict[str, Any]:
    """Delete raw observations and rollups older than their retention windows."""
    from earthkeep.ingest.retention import apply_retention

    s = ingest_settings(ctx.services)
    raw_days = ctx.payload.get("raw_days", s.raw_retention_days)
    rollup_days = ctx.payload.get("rollup_days", s.rollup_retention_days)
    return await asyncio.to_thread(apply_retention, ctx.services.engine, raw_days=raw_days,
                                   rollup_days=rollup_days)


def register(services: Services) -> None:
    services.registry.register(RETENTION_KIND, retention_job, max_attempts=3, timeout_s=3600,
                               description="delete station observations past their retention")


def schedules(settings: Settings) -> list[Schedule]:
    try:
        s: IngestSettings = settings.section("ingest")
    except KeyError:
        s = IngestSettings()
    return [Schedule("ingest-retention", s.retention_schedule, RETENTION_KIND)]
