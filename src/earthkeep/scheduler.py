"""Cron schedules that enqueue jobs; the scheduler never does the work itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from apscheduler.triggers.cron import CronTrigger

from earthkeep.errors import InvalidInput

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = structlog.get_logger(__name__)


def parse_cron(expr: str) -> CronTrigger:
    """Parse a five-field crontab expression (UTC) or raise :class:`InvalidInput`."""
    if len(expr.split()) != 5:
        raise InvalidInput(f"expected a 5-field cron expression like '0 */6 * * *', got {expr!r}")
    try:
        return CronTrigger.from_crontab(expr, timezone="UTC")
    except ValueError as exc:
        raise InvalidInput(f"invalid cron expression {expr!r}: {exc}") from exc


@dataclass
class Schedule:
    """One recurring job: ``kind`` with ``payload`` enqueued at each ``cron`` tick."""

    name: str
    cron: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 0


class Scheduler:
    """Enqueues a job per schedule tick through ``enqueue`` (never runs the job)."""

    def __init__(self, enqueue: Callable[[Schedule], Any]) -> None:
        # imported here: settings import this module for parse_cron and Schedule, and the command line
        # should not pay for APScheduler's scheduler machinery it never starts
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self._enqueue = enqueue
        self._aps: AsyncIOScheduler = AsyncIOScheduler(timezone="UTC")
        self.schedules: dict[str, Schedule] = {}

    def add(self, schedule: Schedule) -> None:
        trigger = parse_cron(schedule.cron)
        self.schedules[schedule.name] = schedule
        self._aps.add_job(
            self._fire, trigger, args=[schedule.name], id=schedule.name,
            replace_existing=True, coalesce=True, max_instances=1, misfire_grace_time=3600,
        )

    def _fire(self, name: str) -> None:
        schedule = self.schedules[name]
        try:
            self._enqueue(schedule)
            log.info("schedule.fired", schedule=name, kind=schedule.kind)
        except Exception as exc:  # a failed enqueue must not stop the scheduler
            log.error("schedule.enqueue_failed", schedule=name, error=str(exc))

    def next_runs(self) -> dict[str, str | None]:
        return {
            job.id: job.next_run_time.isoformat() if job.next_run_time else None
            for job in self._aps.get_jobs()
        }

    def start(self) -> None:
        self._aps.start()

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)
