"""Collect Copernicus Marine surface currents: one file per chunk of days, today - HISTORICAL_DAYS .. +5 days.

Without credentials (or without ``FORCING_BBOX``: the seed pulled the whole
globe, we do not) the run is recorded as ``skipped``; a failing chunk fails the
run but never stops the GFS collection. A chunk is fetched when it is not in
the catalog yet, or when it was collected while still a forecast and a newer
daily run exists (the freshest forecast replaces it).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select

from earthkeep.catalog.items import AssetSpec
from earthkeep.catalog.tables import Item
from earthkeep.errors import EarthkeepError, IntegrityError
from earthkeep.forcing import claims
from earthkeep.forcing.records import CMEMS_COLLECTION, ForcingFile, begin_run, end_run, record_file
from earthkeep.forcing.settings import ForcingConfig
from earthkeep.jobs.handlers import lease_owner
from earthkeep.sources import cmems

if TYPE_CHECKING:
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)
NETCDF_MEDIA = "application/x-netcdf"


@dataclass
class RunReport:
    """What one source's run did (also in the run ledger)."""

    source: str
    status: str
    run_id: str
    records: int = 0
    nbytes: int = 0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def run_day(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _due(services: Services, cfg: ForcingConfig, chunks: list[tuple[datetime, datetime]],
         today: datetime) -> list[tuple[datetime, datetime]]:
    """Chunks not catalogued, or catalogued as a forecast by an older daily run."""
    ds = cfg.sources.cmems_dataset_id
    ids = {cmems.file_id(ds, start): (start, end) for start, end in chunks}
    with services.sessions() as s:
        items = {i.item_id: i for i in s.scalars(select(Item).where(Item.collection == CMEMS_COLLECTION,
                                                                    Item.item_id.in_(list(ids))))}
    due = []
    for fid, (start, end) in ids.items():
        item = items.get(fid)
        if item is None:
            due.append((start, end))
            continue
        run = datetime.fromisoformat(item.properties.get("forecast_date", "1970-01-01T00:00:00+00:00"))
        if run < today and end >= run:
            due.append((start, end))
    return due


async def collect_currents(services: Services, cfg: ForcingConfig, *, now: datetime, job_id: int | None = None,
                           trace_id: str | None = None,
                           sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> RunReport:
    """One Copernicus Marine run, recorded in the ledger as completed, failed or skipped."""
    run_id = await asyncio.to_thread(_begin, services, job_id, trace_id)
    creds = cmems.credentials(cfg.seed)
    reason = None if creds else "no Copernicus Marine credentials: set COPERNICUS_USERNAME and COPERNICUS_PASSWORD"
    if creds and cfg.sources.bbox is None:
        reason = "no bounding box for currents: set FORCING_BBOX=west,south,east,north"
    if reason or creds is None:
        log.info("cmems.skipped", reason=reason)
        await asyncio.to_thread(_end, services, run_id, "skipped", 0, 0, 0, reason, {})
        return RunReport(cmems.SOURCE, "skipped", run_id, error=reason)
    today = run_day(now)
    start = today - timedelta(days=cfg.seed.historical_days)
    end = today + timedelta(days=cfg.sources.cmems_forecast_days)
    chunks = cmems.day_chunks(start, end, cfg.sources.cmems_chunk_days)
    todo = await asyncio.to_thread(_due, services, cfg, chunks, today)
    owner = lease_owner(job_id)
    stored, failed, nbytes = 0, {}, 0
    with tempfile.TemporaryDirectory(prefix="earthkeep-cmems-") as tmp:
        for chunk in todo:
            try:
                size = await _one_chunk(services, cfg, chunk, today, creds, Path(tmp), owner, sleep)
            except EarthkeepError as exc:
                failed[cmems.file_id(cfg.sources.cmems_dataset_id, chunk[0])] = str(exc)
                continue
            stored += size > 0
            nbytes += size
    status = "failed" if failed else "completed"
    error = _failure_text(failed, len(todo)) if failed else None
    details = {"chunks": len(chunks), "due": len(todo), "failed": failed, "dataset": cfg.sources.cmems_dataset_id}
    await asyncio.to_thread(_end, services, run_id, status, stored, nbytes, len(failed), error, details)
    return RunReport(cmems.SOURCE, status, run_id, stored, nbytes, error, details)


async def _one_chunk(services: Services, cfg: ForcingConfig, chunk: tuple[datetime, datetime], today: datetime,
                     creds: tuple[str, str], tmp: Path, owner: str,
                     sleep: Callable[[float], Awaitable[None]]) -> int:
    src = cfg.sources
    fid = cmems.file_id(src.cmems_dataset_id, chunk[0])
    if not await asyncio.to_thread(claims.claim, services.engine, fid, owner, src.claim_ttl_s):
        return 0
    error = None
    try:
        request = cmems.SubsetRequest(
            src.cmems_dataset_id, cmems.check_variables(src.cmems_variables), tuple(src.bbox or ()),  # type: ignore[arg-type]
            src.cmems_min_depth, src.cmems_max_depth, chunk[0], chunk[1], tmp, f"{fid}.nc")
        path = await cmems.fetch_subset(request, creds, retries=src.cmems_retries, backoff_s=src.cmems_backoff_s,
                                        sleep=sleep)
        await asyncio.to_thread(check_currents, path, src.cmems_variables)
        return await _keep(services, cfg, chunk, today, path)
    except EarthkeepError as exc:
        error = str(exc)
        raise
    finally:
        await asyncio.to_thread(claims.release, services.engine, fid, owner, error=error)


def check_currents(path: Path, variables: list[str]) -> None:
    """The file opens and holds ``variables`` on time/latitude/longitude with at least one value."""
    import xarray as xr

    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            missing = [v for v in variables if v not in ds.data_vars]
            if missing or ds.sizes.get("time", 0) == 0:
                raise IntegrityError(f"{path.name}: missing {missing or 'time steps'}")
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path.name} is not a readable NetCDF file: {exc}") from exc


async def _keep(services: Services, cfg: ForcingConfig, chunk: tuple[datetime, datetime], today: datetime,
                path: Path) -> int:
    src = cfg.sources
    key = cmems.store_key(src.cmems_dataset_id, chunk[0])
    info = await services.store.put_file(key, path, content_type=NETCDF_MEDIA)
    record = ForcingFile(
        collection=CMEMS_COLLECTION, item_id=cmems.file_id(src.cmems_dataset_id, chunk[0]),
        data_type="ocean_currents", source=cmems.SOURCE, forecast_date=today, valid_start=chunk[0],
        valid_end=chunk[1], is_forecast=chunk[0] >= today, bbox=tuple(src.bbox or ()),
        assets=[AssetSpec("data", key, info.size, info.sha256, NETCDF_MEDIA)],
        properties={"dataset_id": src.cmems_dataset_id, "variables": list(src.cmems_variables),
                    "depth": [src.cmems_min_depth, src.cmems_max_depth]},
    )
    await asyncio.to_thread(_record, services, record)
    log.info("cmems.stored", key=key, bytes=info.size)
    return info.size


def _record(services: Services, record: ForcingFile) -> None:
    with services.sessions.begin() as s:
        record_file(s, record)


def _begin(services: Services, job_id: int | None, trace_id: str | None) -> str:
    with services.sessions.begin() as s:
        return begin_run(s, cmems.SOURCE, "ocean_currents", job_id=job_id, trace_id=trace_id)


def _end(services: Services, run_id: str, status: str, records: int, nbytes: int, failed: int, error: str | None,
         details: dict[str, Any]) -> None:
    with services.sessions.begin() as s:
        end_run(s, run_id, status, records=records, nbytes=nbytes, failed=failed, error=error, details=details)


def _failure_text(failed: dict[str, str], total: int) -> str:
    first = next(iter(failed.items()))
    return f"{len(failed)} of {total} files failed; first: {first[0]}: {first[1]}"
