"""One collection: GFS (history gaps + the latest complete forecast), then Copernicus Marine.

Each source is its own run in the ledger (and its own ``aggregator_collection_status``
row); one failing never stops the other, and a failed run leaves every file
collected before in place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from earthkeep.errors import EarthkeepError, SourceUnavailable
from earthkeep.forcing import claims
from earthkeep.forcing.currents import RunReport, collect_currents
from earthkeep.forcing.history import Gap, Outlook, gaps, series_files
from earthkeep.forcing.records import begin_run, end_run
from earthkeep.forcing.settings import ForcingConfig
from earthkeep.forcing.wind import WindCollector, catalogued, summarise
from earthkeep.jobs.handlers import lease_owner
from earthkeep.sources.gfs import GfsFile, latest_complete_cycle, mirrors_for

if TYPE_CHECKING:
    from earthkeep.runtime import Services
    from earthkeep.transfer.http import RetryPolicy

log = structlog.get_logger(__name__)
GFS_SOURCE = "noaa_gfs"


async def collect_wind(
    services: Services,
    cfg: ForcingConfig,
    *,
    now: datetime,
    history: bool = True,
    job_id: int | None = None,
    trace_id: str | None = None,
    retry: RetryPolicy | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunReport:
    """Find the latest complete cycle, fill the analysis series' gaps, fetch the cycle's forecast hours."""
    run_id = await asyncio.to_thread(_begin, services, job_id, trace_id)
    try:
        report = await _collect_wind(services, cfg, now, history, retry, progress, lease_owner(job_id))
    except EarthkeepError as exc:
        log.error("gfs.run_failed", error=str(exc))
        await asyncio.to_thread(_end, services, run_id, "failed", 0, 0, 0, str(exc), {})
        return RunReport(GFS_SOURCE, "failed", run_id, error=str(exc))
    status, records, nbytes, failed, error, details = report
    await asyncio.to_thread(_end, services, run_id, status, records, nbytes, failed, error, details)
    return RunReport(GFS_SOURCE, status, run_id, records, nbytes, error, details)


async def _collect_wind(
    services: Services,
    cfg: ForcingConfig,
    now: datetime,
    history: bool,
    retry: RetryPolicy | None,
    progress: Callable[[int], None] | None,
    owner: str,
) -> tuple[Any, ...]:
    src = cfg.sources
    mirrors = src.mirror_urls()
    async with WindCollector(services, cfg, retry=retry, progress=progress, owner=owner) as collector:
        found = await latest_complete_cycle(
            collector, mirrors, cfg.forecast_hours, src.gfs_grid, now=now, lookback=src.gfs_lookback_cycles
        )
        if found is None:
            raise _no_cycle(mirrors, src.gfs_lookback_cycles)
        cycle, mirror = found
        latest = [GfsFile(cycle, h, src.gfs_grid) for h in cfg.forecast_hours]
        files = latest + (_history_files(cfg, now, cycle, latest) if history else [])
        outcomes = []
        for group_mirrors, group in _by_mirror_set(files, mirrors, now, mirror):
            outcomes += await collector.collect(group, group_mirrors)
    return _verdict(
        outcomes, {f.file_id for f in latest}, {"cycle": cycle.isoformat(), "mirror": mirror, "files": len(files)}
    )


def _history_files(cfg: ForcingConfig, now: datetime, cycle: datetime, latest: list[GfsFile]) -> list[GfsFile]:
    """The analysis series' files of the cycles before ``cycle`` (the latest cycle's are in ``latest``)."""
    wanted = {f.file_id for f in latest}
    return [f for f in series_files(cfg, now, newest=cycle) if f.file_id not in wanted and f.cycle < cycle]


def _verdict(outcomes: list[Any], latest_ids: set[str], details: dict[str, Any]) -> tuple[Any, ...]:
    """Run status: failed when a file of the latest cycle failed; history gaps are reported, not fatal."""
    summary = summarise(outcomes)
    failed = summary["failed"]
    latest_failed = {k: v for k, v in failed.items() if k in latest_ids}
    error = None
    if latest_failed:
        error = _failure_text(latest_failed, len(latest_ids), "of the latest cycle's")
    elif failed:
        error = _failure_text(failed, len(outcomes) - len(latest_ids), "history")
    status = "failed" if latest_failed else "completed"
    return (status, summary["counts"].get("stored", 0), summary["bytes"], len(failed), error, {**details, **summary})


def _by_mirror_set(
    files: list[GfsFile], mirrors: dict[str, str], now: datetime, first: str
) -> list[tuple[dict[str, str], list[GfsFile]]]:
    """Group files by the mirrors that may hold them (the latest cycle's mirror first)."""
    groups: dict[tuple[str, ...], list[GfsFile]] = {}
    for f in files:
        usable = mirrors_for(f.cycle, mirrors, now)
        order = tuple(sorted(usable, key=lambda m: (m != first, list(mirrors).index(m))))
        groups.setdefault(order, []).append(f)
    return [({m: mirrors[m] for m in order}, fs) for order, fs in groups.items()]


def _no_cycle(mirrors: dict[str, str], lookback: int) -> EarthkeepError:

    return SourceUnavailable(
        f"no complete GFS cycle in the last {lookback} cycles on {', '.join(mirrors)} "
        "(every forecast hour's .idx must be published); older data is kept"
    )


def gap_report(services: Services, cfg: ForcingConfig, *, now: datetime) -> list[Gap]:
    """What the 3-hourly analysis series over ``HISTORICAL_DAYS`` lacks in the catalog, and why."""
    files = series_files(cfg, now)
    present = catalogued(services, files)
    errors = claims.last_errors(services.engine, [f.file_id for f in files if f.file_id not in present])
    return gaps(files, present, errors, now=now, outlook=Outlook.of(cfg, now))


async def collect_all(
    services: Services,
    cfg: ForcingConfig,
    *,
    now: datetime,
    history: bool = True,
    job_id: int | None = None,
    trace_id: str | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> list[RunReport]:
    """GFS then Copernicus Marine, each recorded on its own; neither stops the other."""
    reports = [await collect_wind(services, cfg, now=now, history=history, job_id=job_id, trace_id=trace_id)]
    try:
        reports.append(await collect_currents(services, cfg, now=now, job_id=job_id, trace_id=trace_id, sleep=sleep))
    except Exception as exc:  # recorded in its run already when it got that far; never stop GFS's result
        log.error("cmems.unexpected", error=repr(exc))
        reports.append(RunReport("copernicus", "failed", "", error=repr(exc)))
    return reports


def _begin(services: Services, job_id: int | None, trace_id: str | None) -> str:
    with services.sessions.begin() as s:
        return begin_run(s, GFS_SOURCE, "wind", job_id=job_id, trace_id=trace_id)


def _end(
    services: Services,
    run_id: str,
    status: str,
    records: int,
    nbytes: int,
    failed: int,
    error: str | None,
    details: dict[str, Any],
) -> None:
    with services.sessions.begin() as s:
        end_run(s, run_id, status, records=records, nbytes=nbytes, failed=failed, error=error, details=details)


def _failure_text(failed: dict[str, str | None], total: int, what: str) -> str:
    name, why = next(iter(failed.items()))
    return f"{len(failed)} of {total} {what} files failed; first: {name}: {why}"
