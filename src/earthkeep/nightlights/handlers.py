"""The nightlights job kinds (registered through :data:`earthkeep.nightlights.domain.DOMAIN`).

* ``laads_download`` {area_id, month}: list the month's nights on LAADS, fetch the
  tiles the area needs through the transfer engine (each tile once for all areas),
  catalogue them, record the input.
* ``earth_engine_export`` {area_id, month}: ask Earth Engine for the monthly
  composite GeoTIFF of the area, fetch it, record the input.
* ``etl_processing`` {request_id}: composites, COGs and metrics of every month.
* ``nightlights_sweep`` {}: start processing whose trigger was lost.

An acquisition that fails for good (bad input, missing credentials, last attempt
spent) records the failure with its reason before the job fails, so processing
of the request still starts and reports it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from shapely.geometry import mapping
from sqlalchemy import select

from earthkeep.catalog.db import translate_errors
from earthkeep.catalog.items import AssetSpec, upsert_item
from earthkeep.catalog.tables import Item
from earthkeep.errors import Conflict, EarthkeepError, InvalidInput, NotFound
from earthkeep.jobs.handlers import JobContext
from earthkeep.jobs.worker import PERMANENT
from earthkeep.nightlights import keys
from earthkeep.nightlights.months import days_of, month_bounds, parse_month
from earthkeep.nightlights.processing import process_request
from earthkeep.nightlights.requests import EARTH_ENGINE, ETL, LAADS, SWEEP, nl_settings, record_input, sweep
from earthkeep.nightlights.state import state as nl_state
from earthkeep.nightlights.tables import Area
from earthkeep.raster.grid import BLACK_MARBLE_RES, snap
from earthkeep.sources import blackmarble
from earthkeep.transfer.engine import TransferRequest, TransferResult

if TYPE_CHECKING:
    from earthkeep.domain import DomainContext
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)
RAW_COLLECTION = "VNP46A2"


def _target(ctx: JobContext) -> tuple[int, str]:
    try:
        area_id, month = int(ctx.payload["area_id"]), str(ctx.payload["month"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{ctx.job.kind} job needs area_id and month: {exc}") from exc
    parse_month(month)
    return area_id, month


def _area(services: Services, area_id: int) -> Area:
    with translate_errors("nightlights"), services.sessions() as s:
        area = s.get(Area, area_id)
        if area is None:
            raise NotFound(f"area {area_id} no longer exists")
        return area


async def _acquire(ctx: JobContext, source: str,
                   fetch: Callable[[Services, Area, str], Awaitable[tuple[list[str], dict[str, Any]]]]) -> dict:
    """Run an acquisition and record its outcome (a final failure too) for the request's processing."""
    area_id, month = _target(ctx)
    services = ctx.services
    try:
        files, details = await fetch(services, _area(services, area_id), month)
    except Exception as exc:
        last = ctx.job.attempts >= ctx.job.max_attempts
        if isinstance(exc, PERMANENT) or last:
            reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, EarthkeepError) else repr(exc)
            await asyncio.to_thread(record_input, services, area_id, month, source, job_id=ctx.job.id,
                                    error=reason)
        raise
    await asyncio.to_thread(record_input, services, area_id, month, source, job_id=ctx.job.id, files=files,
                            details=details)
    return {"area_id": area_id, "month": month, "files": len(files), **details}


# ------------------------------------------------------------------ LAADS


async def _laads(services: Services, area: Area, month: str) -> tuple[list[str], dict[str, Any]]:
    settings = nl_settings(services)
    token = blackmarble.earthdata_token(settings)
    async with httpx.AsyncClient(timeout=services.settings.transfer.timeout_s) as client:
        plan = await blackmarble.plan_laads_month(settings, area.geom, days_of(month), client=client)
    if not plan.granules:
        raise NotFound(f"LAADS has no {blackmarble.PRODUCT} tiles {_tiles(plan.tiles)} for {month} "
                       f"(collection {settings.laads_collection}); nothing to process")
    gate = asyncio.Semaphore(4)
    async with services.transfer() as engine:
        outcomes = await asyncio.gather(*(_fetch_once(services, engine, r, gate) for r in plan.requests(token)),
                                        return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        raise errors[0]
    fetched = {o.key: (o.size, o.sha256) for o in outcomes if isinstance(o, TransferResult)}
    downloaded = len(fetched)
    fetched |= await _uncatalogued(services, [g for g in plan.granules if g.key not in fetched])
    await asyncio.to_thread(_catalogue, services, plan.granules, fetched)
    return [g.key for g in plan.granules], {"granules": len(plan.granules), "downloaded": downloaded,
                                           "tiles": _tiles(plan.tiles), "missing_days": plan.missing}


async def _fetch_once(services: Services, engine: Any, req: TransferRequest,
                      gate: asyncio.Semaphore) -> TransferResult | None:
    """Fetch a raw tile unless it is stored; concurrent jobs of this process wait for each other per tile."""
    locks = nl_state(services).tile_locks
    entry = locks.setdefault(req.key, [asyncio.Lock(), 0])
    entry[1] += 1
    try:
        async with entry[0]:
            if await _stored(services, req):
                return None
            async with gate:
                try:
                    return await engine.fetch(req)  # type: ignore[no-any-return]
                except (Conflict, NotFound):
                    if await _stored_soon(services, req):  # another process fetched the same tile
                        return None
                    raise
    finally:
        entry[1] -= 1
        if entry[1] == 0:
            locks.pop(req.key, None)


async def _stored_soon(services: Services, req: TransferRequest, wait_s: float = 30.0) -> bool:
    """Wait for another process's download of the same tile to land in the store."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while loop.time() < deadline:
        if await _stored(services, req):
            return True
        await asyncio.sleep(0.25)
    return False


def _tiles(tiles: list[tuple[int, int]]) -> str:
    return ",".join(f"h{h:02d}v{v:02d}" for h, v in tiles)


async def _stored(services: Services, req: TransferRequest) -> bool:
    """A raw tile already in the store with the announced size is not fetched again."""
    try:
        info = await services.store.head(req.key)
    except NotFound:
        return False
    return req.size is None or info.size == req.size


async def _uncatalogued(services: Services, granules: list[blackmarble.Granule]) -> dict[str, tuple[int, str]]:
    """Size and sha256 of stored tiles that no item records (a process died between storing and cataloguing).

    Tiles are catalogued by the job that fetched them, after the whole month; a job that finds a tile
    already stored skips it, so without this a worker killed in between loses those items for good.
    """
    if not granules:
        return {}
    by_id = {g.name.removesuffix(".h5"): g for g in granules}

    def known() -> set[str]:
        with services.sessions() as s:
            return set(s.scalars(select(Item.item_id).where(Item.collection == RAW_COLLECTION,
                                                            Item.item_id.in_(list(by_id)))))

    out: dict[str, tuple[int, str]] = {}
    for item_id in by_id.keys() - await asyncio.to_thread(known):
        g, digest, size = by_id[item_id], hashlib.sha256(), 0
        async for chunk in services.store.stream(g.key):
            digest.update(chunk)
            size += len(chunk)
        out[g.key] = (size, digest.hexdigest())
    return out


def _catalogue(services: Services, granules: list[blackmarble.Granule],
               fetched: dict[str, tuple[int, str | None]]) -> None:
    with translate_errors("nightlights"), services.sessions.begin() as s:
        for g in granules:
            if g.key not in fetched:
                continue
            size, sha256 = fetched[g.key]
            start = datetime(g.day.year, g.day.month, g.day.day, tzinfo=UTC)
            upsert_item(s, collection=RAW_COLLECTION, item_id=g.name.removesuffix(".h5"), start=start,
                        end=start + timedelta(days=1), bbox=blackmarble.tile_box(*g.tile).bounds,
                        properties={"tile": f"h{g.tile[0]:02d}v{g.tile[1]:02d}", "source_url": g.url},
                        assets=[AssetSpec("data", g.key, size, sha256, "application/x-hdf5")])


async def laads_handler(ctx: JobContext) -> dict[str, Any]:
    """``laads_download``: the month's VNP46A2 tiles of an area from LAADS."""
    return await _acquire(ctx, LAADS, _laads)


# ----------------------------------------------------------- Earth Engine


def earth_engine_export(services: Services, area: Area, month: str) -> blackmarble.EarthEngineExport:
    """What to ask Earth Engine for: the area's 15" grid and the month's dates."""
    settings = nl_settings(services)
    grid = snap(area.geom.bounds, BLACK_MARBLE_RES)
    start, end = month_bounds(month)
    t = grid.transform
    return blackmarble.EarthEngineExport(
        geometry=dict(mapping(area.geom)), start=start.date().isoformat(), end=end.date().isoformat(),
        band=settings.ee_band, crs_transform=(t.a, t.b, t.c, t.d, t.e, t.f), dimensions=(grid.width, grid.height),
        accepted_flags=settings.accepted_flags, mask_cloudy=settings.mask_cloudy)


async def _earth_engine(services: Services, area: Area, month: str) -> tuple[list[str], dict[str, Any]]:
    credentials = blackmarble.earth_engine_credentials(nl_settings(services))
    export = earth_engine_export(services, area, month)
    url = await asyncio.to_thread(blackmarble.earth_engine_download_url, export, credentials)
    key = keys.input_key(area.id, month, "earth_engine.tif")
    async with services.transfer() as engine:
        res = await engine.fetch(TransferRequest(url=url, key=key, content_type="image/tiff"))
    return [key], {"bytes": res.size, "band": export.band, "collection": blackmarble.EARTH_ENGINE.collection}


async def earth_engine_handler(ctx: JobContext) -> dict[str, Any]:
    """``earth_engine_export``: the month's median composite of an area from Earth Engine."""
    return await _acquire(ctx, EARTH_ENGINE, _earth_engine)


# -------------------------------------------------------------- ETL, sweep


async def etl_handler(ctx: JobContext) -> dict[str, Any]:
    """``etl_processing``: composites and metrics of every month of a request."""
    try:
        request_id = int(ctx.payload["request_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"etl_processing job needs request_id: {exc}") from exc
    return await process_request(ctx.services, request_id, job_id=ctx.job.id)


async def sweep_handler(ctx: JobContext) -> dict[str, Any]:
    """``nightlights_sweep``: enqueue processing for requests whose acquisitions all ended."""
    started = await asyncio.to_thread(sweep, ctx.services)
    return {"etl_jobs": started}


def register(ctx: DomainContext[Any, Any]) -> None:
    reg = ctx.registry
    reg.register(LAADS, laads_handler, max_attempts=5, timeout_s=6 * 3600,
                 description="download a month of VNP46A2 tiles for an area from LAADS")
    reg.register(EARTH_ENGINE, earth_engine_handler, max_attempts=5, timeout_s=3600,
                 description="export a monthly VNP46A2 composite for an area from Earth Engine")
    reg.register(ETL, etl_handler, max_attempts=5, timeout_s=6 * 3600,
                 description="monthly composites, COGs and electrification metrics of a request")
    reg.register(SWEEP, sweep_handler, max_attempts=1, timeout_s=300,
                 description="start processing whose acquisition jobs all ended", housekeeping=True)
