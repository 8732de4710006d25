"""``etl_processing``: from stored inputs to a composite COG and metrics, month by month.

For each month of a request: copy the inputs from the store into a scratch
directory, build the monthly composite on the area's 15" grid (LAADS: masked
nights -> median; Earth Engine / upload: the GeoTIFF resampled onto the grid),
blank the cells outside the area, store the composite as a COG, compute the
metrics with the area's cached coverage weights and upsert them. A month whose
input is unusable (corrupt HDF5 or GeoTIFF, failed acquisition) stores nothing;
the job then fails naming each such month and why.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
import structlog
from rasterio.features import geometry_mask
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select

from earthkeep.catalog.db import translate_errors
from earthkeep.catalog.items import AssetSpec, upsert_item
from earthkeep.catalog.tables import Job
from earthkeep.errors import InvalidInput, NotFound
from earthkeep.events.base import Event
from earthkeep.nightlights import keys
from earthkeep.nightlights.months import month_bounds, months_between
from earthkeep.nightlights.requests import LAADS, get_request, lock_area, locked, nl_settings
from earthkeep.nightlights.results import upsert_result
from earthkeep.nightlights.state import state as nl_state
from earthkeep.nightlights.tables import Area, Input
from earthkeep.raster.blackmarble import Masking, common_resolution, monthly_composite, open_granules
from earthkeep.raster.cog import write_cog
from earthkeep.raster.geotiff import read_onto_grid
from earthkeep.raster.grid import BLACK_MARBLE_RES, Grid, snap
from earthkeep.raster.zonal import (
    CoverageWeights,
    StackedWeights,
    WeightCache,
    coverage_weights,
    stack_weights,
    zonal_metrics,
)

if TYPE_CHECKING:
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)
COMPOSITES = "nightlights-composites"


@dataclass
class Composite:
    grid: Grid
    median: np.ndarray
    nights: np.ndarray


async def process_request(services: Services, request_id: int, *, job_id: int | None) -> dict[str, Any]:
    """Process every month of a request; raise :class:`InvalidInput` naming the months that failed."""
    req = get_request(services, request_id)
    months = months_between(req.start_month, req.end_month)
    with translate_errors("nightlights"), services.sessions() as s:
        area = s.get(Area, req.area_id)
        if area is None:
            raise NotFound(f"area {req.area_id} of request {request_id} no longer exists")
        inputs = {
            i.month: i
            for i in s.scalars(
                select(Input).where(Input.area_id == req.area_id, Input.source == req.source, Input.month.in_(months))
            )
        }
        jobs = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(req.acquisition_job_ids or [0])))}
    stored: list[str] = []
    failed: dict[str, str] = {}
    for i, month in enumerate(months):
        inp = inputs.get(month)
        if inp is None or inp.status != "ready":
            failed[month] = _why_missing(inp, jobs, req.acquisition_job_ids, i)
            continue
        try:
            await process_month(services, area, month, inp, job_id=job_id)
        except InvalidInput as exc:
            failed[month] = str(exc)
            continue
        stored.append(month)
    if failed:
        detail = "; ".join(f"{m}: {why}" for m, why in failed.items())
        raise InvalidInput(
            f"{len(failed)} of {len(months)} month(s) failed, nothing stored for them ({detail}); "
            f"stored: {', '.join(stored) or 'none'}"
        )
    return {"request_id": request_id, "area_id": area.id, "months": stored}


def _why_missing(inp: Input | None, jobs: dict[int, Job], ids: list[int], index: int) -> str:
    if inp is not None and inp.error:
        return inp.error
    job = jobs.get(ids[index]) if index < len(ids) else None
    if job is not None and job.error:
        return f"acquisition job {job.id} {job.status}: {job.error}"
    return "no input was acquired"


async def process_month(
    services: Services, area: Area, month: str, inp: Input, *, job_id: int | None
) -> dict[str, Any]:
    """Composite, COG, weights and metrics of one area and month (idempotent)."""
    settings = nl_settings(services)
    with tempfile.TemporaryDirectory(prefix="earthkeep-nl-") as tmp:
        paths = await _fetch_inputs(services, inp.files, Path(tmp))
        try:
            comp = await asyncio.to_thread(_compose, area.geom, paths, inp.source, _masking(settings))
        except InvalidInput as exc:
            await _forget_corrupt(services, inp, str(exc))
            raise
        cog = await asyncio.to_thread(
            write_cog,
            Path(tmp) / "composite.tif",
            [comp.median, comp.nights],
            comp.grid,
            descriptions=["median_radiance", "valid_nights"],
        )
        key = keys.composite_key(area.id, month)
        info = await services.store.put_file(key, cog, content_type="image/tiff; application=geotiff")
    weights = await area_weights(services, area, comp.grid)
    metrics = await asyncio.to_thread(
        zonal_metrics, comp.median, weights, threshold=settings.lit_threshold, nights=comp.nights
    )
    start, end = month_bounds(month)
    with translate_errors("nightlights"), locked(services) as s:
        lock_area(s, area.id)  # concurrent writers of one area's results take turns
        upsert_result(
            s,
            area_id=area.id,
            month=month,
            source=inp.source,
            metrics=metrics,
            threshold=settings.lit_threshold,
            composite_key=key,
            job_id=job_id,
        )
        upsert_item(
            s,
            collection=COMPOSITES,
            item_id=f"area-{area.id}-{month}",
            start=start,
            end=end,
            bbox=comp.grid.bounds,
            geometry=area.geom,  # the footprint: cells outside the area are blank
            properties={"area_id": area.id, "month": month, "source": inp.source},
            assets=[
                AssetSpec("composite", key, info.size, info.sha256, "image/tiff; application=geotiff", roles=("data",))
            ],
        )
        s.commit()
    await _drop_tiles(services, area.id, month)
    await services.bus.publish(
        Event(
            "nightlights.result",
            f"area/{area.id}",
            {"area_id": area.id, "month": month, "sum_radiance": metrics["sum_radiance"]},
        )
    )
    log.info(
        "nightlights.month_processed",
        area_id=area.id,
        month=month,
        source=inp.source,
        sum_radiance=metrics["sum_radiance"],
        valid_fraction=round(metrics["valid_fraction"], 4),
    )
    return metrics


def _masking(settings: Any) -> Masking:
    return Masking(accepted_flags=settings.accepted_flags, mask_cloudy=settings.mask_cloudy)


async def _fetch_inputs(services: Services, files: list[str], tmp: Path) -> list[tuple[Path, str]]:
    out = []
    for i, key in enumerate(files):
        name = posixpath.basename(key)
        path = tmp / f"{i:04d}-{name}"
        try:
            with path.open("wb") as fh:
                async for chunk in services.store.stream(key):
                    fh.write(chunk)
        except NotFound as exc:
            raise InvalidInput(f"input {key} is no longer in the store; submit the month again") from exc
        out.append((path, name))
    if not out:
        raise InvalidInput("the acquisition recorded no input files")
    return out


def _compose(geometry: BaseGeometry, paths: list[tuple[Path, str]], source: str, masking: Masking) -> Composite:
    """Monthly composite on the area's grid, NaN outside the area (runs in a thread)."""
    if source == LAADS:
        with open_granules(paths) as granules:
            grid = snap(geometry.bounds, common_resolution(granules))
            median, nights = monthly_composite(granules, grid, masking)
    else:
        grid = snap(geometry.bounds, BLACK_MARBLE_RES)
        path, name = paths[0]
        median = read_onto_grid(path, grid, name=name)
        nights = np.full(grid.shape, np.nan, dtype=np.float32)
    outside = geometry_mask([mapping(geometry)], out_shape=grid.shape, transform=grid.transform, all_touched=True)
    median[outside] = np.nan
    nights[outside] = np.nan
    return Composite(grid, median, nights)


async def _forget_corrupt(services: Services, inp: Input, reason: str) -> None:
    """Delete stored raw inputs named in ``reason`` so that a new request downloads them again."""
    for key in inp.files:
        if posixpath.basename(key) in reason:
            await services.store.delete(key)
            log.warning("nightlights.corrupt_input_removed", key=key)


def weight_cache(services: Services) -> WeightCache:
    """This worker's coverage weights in memory (one per process: the services live as long as it)."""
    state = nl_state(services)
    if state.weights is None:
        state.weights = WeightCache()
    return state.weights


async def area_weights(services: Services, area: Area, grid: Grid) -> CoverageWeights:
    """Coverage weights of ``area`` on ``grid``: memory, else the store, else exactextract (then both).

    The cache key is the area, a digest of its geometry and the grid's (corner, resolution and shape;
    grids are WGS84): another geometry or grid is another key, and updating or deleting an area purges
    its stored weights (:func:`purge_objects`). An unreadable stored copy is computed again.
    """
    cache = weight_cache(services)
    grid_digest = grid.digest()
    digest = f"{geometry_digest(area.geom)}-{grid_digest}"
    cached = cache.get((area.id, digest))
    if isinstance(cached, CoverageWeights):
        return cached
    key = keys.weights_key(area.id, digest)
    try:
        weights = CoverageWeights.from_bytes(await services.store.get(key))
        if weights.grid_digest != grid_digest:
            raise ValueError(f"weights of grid {weights.grid_digest}, expected {grid_digest}")
    except (NotFound, ValueError) as exc:
        if isinstance(exc, ValueError):
            log.warning("nightlights.weights_unreadable", key=key, error=str(exc))
        weights = (await asyncio.to_thread(coverage_weights, [area.geom], grid))[0]
        await services.store.put(key, weights.to_bytes(), content_type="application/octet-stream")
    cache.put((area.id, digest), weights)
    return weights


async def stacked_area_weights(services: Services, areas: Sequence[Area], grid: Grid) -> StackedWeights:
    """The weights of many areas on one grid, stacked for :func:`zonal_metrics_many`: memory, else one
    stored object for the set (one read), else each area's (:func:`area_weights`, read concurrently),
    then stacked and stored as the set's object.

    The set's key is a digest of the areas' geometries, in order, and of the grid: weights depend on
    nothing else, so an edited area makes another key and a stale object is never read. An unreadable
    stored set is logged, built again from the areas and replaced.
    """
    cache = weight_cache(services)
    grid_digest = grid.digest()
    wkb = shapely.to_wkb(np.array([a.geom for a in areas], dtype=object))  # (one call: 1 µs an area)
    digest = hashlib.sha1(" ".join([*(_digest(w) for w in wkb), grid_digest]).encode()).hexdigest()
    ids = frozenset(a.id for a in areas)
    cached = cache.get(("set", ids, digest))
    if isinstance(cached, StackedWeights):
        return cached
    key = keys.weights_set_key(digest[:32])
    try:
        stacked = StackedWeights.from_bytes(await services.store.get(key))
        if stacked.grid_digest != grid_digest or len(stacked) != len(areas):
            got = f"{len(stacked)} areas on grid {stacked.grid_digest}"
            raise ValueError(f"{got}, expected {len(areas)} on {grid_digest}")
    except (NotFound, ValueError) as exc:
        if isinstance(exc, ValueError):
            log.warning("nightlights.weights_unreadable", key=key, error=str(exc))
        stacked = stack_weights(await each_area_weights(services, areas, grid))
        await services.store.put(key, stacked.to_bytes(), content_type="application/octet-stream")
    cache.put(("set", ids, digest), stacked)
    return stacked


async def each_area_weights(
    services: Services, areas: Sequence[Area], grid: Grid, *, concurrency: int = 16
) -> list[CoverageWeights]:
    """:func:`area_weights` of each area, at most ``concurrency`` at a time (store reads overlap)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(area: Area) -> CoverageWeights:
        async with gate:
            return await area_weights(services, area, grid)

    return list(await asyncio.gather(*(one(a) for a in areas)))


def geometry_digest(geom: BaseGeometry) -> str:
    return _digest(shapely.to_wkb(geom))


def _digest(wkb: bytes) -> str:
    return hashlib.sha1(wkb).hexdigest()[:16]


async def _drop_tiles(services: Services, area_id: int, month: str | None = None) -> int:
    objs = await services.store.list(keys.tile_prefix(area_id, month))
    for o in objs:
        await services.store.delete(o.key)
    return len(objs)


async def purge_objects(services: Services, area_id: int) -> int:
    """Delete every stored object derived from an area (composites, tiles, weights, inputs)."""
    n = 0
    for prefix in keys.area_prefixes(area_id):
        for o in await services.store.list(prefix):
            await services.store.delete(o.key)
            n += 1
    weight_cache(services).drop(
        lambda k: isinstance(k, tuple) and (k[0] == area_id or (k[0] == "set" and area_id in k[1]))
    )
    return n
