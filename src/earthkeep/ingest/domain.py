"""The ingest domain's hooks: the retention job kind and its schedule; its state is the process's runtime."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from earthkeep.domain import Domain, DomainContext
from earthkeep.ingest.settings import IngestSettings
from earthkeep.scheduler import Schedule

if TYPE_CHECKING:
    from earthkeep.config import Settings
    from earthkeep.ingest.runtime import IngestRuntime
    from earthkeep.jobs.handlers import JobContext

RETENTION_KIND = "ingest.retention"


async def retention_job(ctx: JobContext) -> dict[str, Any]:
    """Delete raw observations and rollups older than their retention windows."""
    from earthkeep.ingest.retention import apply_retention

    s = ctx.services.settings.of(IngestSettings)
    raw_days = ctx.payload.get("raw_days", s.raw_retention_days)
    rollup_days = ctx.payload.get("rollup_days", s.rollup_retention_days)
    return await asyncio.to_thread(apply_retention, ctx.services.engine, raw_days=raw_days,
                                   rollup_days=rollup_days)


def register(ctx: DomainContext[Any, Any]) -> None:
    ctx.registry.register(RETENTION_KIND, retention_job, max_attempts=3, timeout_s=3600,
                          description="delete station observations past their retention")


def schedules(settings: Settings) -> list[Schedule]:
    s = settings.of(IngestSettings)
    return [Schedule("ingest-retention", s.retention_schedule, RETENTION_KIND)]


@dataclass
class IngestState:
    """The process's :class:`~earthkeep.ingest.runtime.IngestRuntime`, made by ``runtime_for`` on first use."""

    runtime: IngestRuntime | None = None


DOMAIN: Domain[IngestSettings, IngestState] = Domain(
    "ingest", register, settings=IngestSettings, tables=("earthkeep.ingest.tables",), job_kinds=(RETENTION_KIND,),
    schedules=lambda ctx: schedules(ctx.settings), state=lambda ctx: IngestState(),
    router="earthkeep.api.routers.ingest:router",
    cli={"stations": "earthkeep.cli.stations:app", "weather": "earthkeep.cli.weather:app"},
)
