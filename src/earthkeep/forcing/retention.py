"""Retention of forcing files by *valid time*: a pure plan, then apply (rows, then files).

A file goes when its valid time ended more than ``MAX_DATA_AGE_DAYS`` ago,
except the files of the latest complete forecast of each collection, which are
kept whatever their age (when upstream has been down for days, the last good
forecast is all drift models have). For GFS the latest complete forecast is
the newest cycle whose every forecast hour is catalogued (the newest cycle at
all when none is complete); for Copernicus Marine the newest daily run.
Applying deletes the catalog rows (items, assets, ``aggregator_datasets``) in
one transaction first, then the stored objects: a crash in between leaves
unreferenced objects, never rows pointing at missing files.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select, tuple_

from earthkeep.catalog.runs import finish_run, start_run
from earthkeep.catalog.tables import Item
from earthkeep.forcing.records import CMEMS_COLLECTION, GFS_COLLECTION, delete_files
from earthkeep.forcing.settings import ForcingConfig

if TYPE_CHECKING:
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)
CLEANUP_SOURCE = "forcing-cleanup"


@dataclass(frozen=True)
class Held:
    """What the plan needs to know of one stored file."""

    collection: str
    item_id: str
    valid_end: datetime
    forecast_date: datetime
    hour: int | None
    keys: tuple[str, ...]
    size: int


@dataclass
class RetentionPlan:
    """Which files go, which old ones stay because they are the latest complete forecast."""

    cutoff: datetime
    delete: list[Held] = field(default_factory=list)
    protected: list[Held] = field(default_factory=list)
    kept: int = 0
    latest: dict[str, str] = field(default_factory=dict)

    def stats(self) -> dict[str, Any]:
        """Counts and bytes, for logs and the run ledger."""
        per: dict[str, int] = defaultdict(int)
        for h in self.delete:
            per[h.collection] += 1
        return {"cutoff": self.cutoff.isoformat(), "delete": len(self.delete),
                "bytes": sum(h.size for h in self.delete),
                "protected": len(self.protected), "kept": self.kept, "per_collection": dict(per),
                "latest_forecast": dict(self.latest)}


def latest_forecast(held: Iterable[Held], expected_hours: Sequence[int]) -> dict[str, datetime]:
    """Per collection, the forecast date of the latest complete forecast (see the module docstring)."""
    runs: dict[str, dict[datetime, set[int | None]]] = defaultdict(lambda: defaultdict(set))
    for h in held:
        runs[h.collection][h.forecast_date].add(h.hour)
    out: dict[str, datetime] = {}
    for collection, by_run in runs.items():
        newest_first = sorted(by_run, reverse=True)
        if collection == GFS_COLLECTION:
            complete = [r for r in newest_first if set(expected_hours) <= by_run[r]]
            out[collection] = complete[0] if complete else newest_first[0]
        else:
            out[collection] = newest_first[0]
    return out


def plan_retention(held: Sequence[Held], *, now: datetime, max_age_days: int,
                   expected_hours: Sequence[int]) -> RetentionPlan:
    """Decide, without touching anything, what retention deletes."""
    plan = RetentionPlan(cutoff=now - timedelta(days=max_age_days))
    latest = latest_forecast(held, expected_hours)
    plan.latest = {c: d.isoformat() for c, d in latest.items()}
    for h in held:
        if h.valid_end >= plan.cutoff:
            plan.kept += 1
        elif latest.get(h.collection) == h.forecast_date:
            plan.protected.append(h)
        else:
            plan.delete.append(h)
    return plan


def load_held(services: Services) -> list[Held]:
    """Every forcing item as :class:`Held`."""
    out = []
    with services.sessions() as s:
        for item in s.scalars(select(Item).where(Item.collection.in_((GFS_COLLECTION, CMEMS_COLLECTION)))):
            props = item.properties or {}
            out.append(Held(
                item.collection, item.item_id, item.end_datetime or item.start_datetime,  # type: ignore[arg-type]
                datetime.fromisoformat(props["forecast_date"]), props.get("forecast_hour"),
                tuple(a.store_key for a in item.assets), sum(a.size for a in item.assets),
            ))
    return out


async def apply_plan(services: Services, plan: RetentionPlan) -> dict[str, Any]:
    """Delete the plan's rows (one transaction), then its files; return the statistics."""
    import asyncio

    keys = await asyncio.to_thread(_delete_rows, services, plan.delete)
    missing = 0
    for key in keys:
        try:
            await services.store.delete(key)
        except Exception as exc:  # an unreachable store leaves an orphan object, never a dangling row
            missing += 1
            log.warning("forcing.cleanup_file_failed", key=key, error=str(exc))
    return {**plan.stats(), "files_deleted": len(keys) - missing, "files_failed": missing}


def _delete_rows(services: Services, doomed: Sequence[Held]) -> list[str]:
    pairs = [(h.collection, h.item_id) for h in doomed]
    keys: list[str] = []
    with services.sessions.begin() as s:
        for i in range(0, len(pairs), 400):
            items = list(s.scalars(select(Item).where(tuple_(Item.collection, Item.item_id).in_(pairs[i:i + 400]))))
            keys += delete_files(s, items)
    return keys


async def cleanup(services: Services, cfg: ForcingConfig, *, now: datetime, dry_run: bool = False,
                  job_id: int | None = None) -> dict[str, Any]:
    """Plan and (unless ``dry_run``) apply retention; log the statistics and record a run."""
    import asyncio

    held = await asyncio.to_thread(load_held, services)
    plan = plan_retention(held, now=now, max_age_days=cfg.seed.max_data_age_days, expected_hours=cfg.forecast_hours)
    if dry_run:
        stats = {**plan.stats(), "dry_run": True, "files": [h.item_id for h in plan.delete]}
        log.info("forcing.cleanup_planned", **{k: v for k, v in stats.items() if k != "files"})
        return stats
    stats = await apply_plan(services, plan)
    log.info("forcing.cleanup_done", **stats)
    await asyncio.to_thread(_record, services, stats, job_id)
    return stats


def _record(services: Services, stats: dict[str, Any], job_id: int | None) -> None:
    with services.sessions.begin() as s:
        run = start_run(s, CLEANUP_SOURCE, job_id=job_id)
        status = "failed" if stats["files_failed"] else "completed"
        error = f"{stats['files_failed']} files could not be deleted from the store" if stats["files_failed"] else None
        finish_run(s, run.id, status, records=stats["delete"], nbytes=stats["bytes"],
                   failed=stats["files_failed"], error=error, details=stats)
