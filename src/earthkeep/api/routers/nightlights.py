"""Nightlights: areas, jobs per month range, results (JSON/CSV), uploads and map tiles.

Writes need a key with the ``ingest`` scope (``admin`` holds every scope).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import AliasChoices, BaseModel, Field

from earthkeep.api.deps import ReadDep, ServicesDep, require
from earthkeep.api.params import (
    MONTH_PATTERN,
    AfterQuery,
    BBoxQuery,
    Id,
    IdPath,
    IdQuery,
    MonthPath,
    TilePath,
    ZoomPath,
)
from earthkeep.catalog.db import translate_errors
from earthkeep.nightlights import areas as area_ops
from earthkeep.nightlights import requests as nl_jobs
from earthkeep.nightlights import results as nl_results
from earthkeep.nightlights.geometry import parse_area
from earthkeep.nightlights.processing import purge_objects
from earthkeep.nightlights.tiles import get_tile, get_tilejson
from earthkeep.nightlights.uploads import submit_upload
from earthkeep.runtime import Services

router = APIRouter(tags=["nightlights"])
IngestDep = Annotated[Any, Depends(require("ingest"))]
GEOJSON = "application/geo+json"


class JobsIn(BaseModel):
    """An area and an inclusive month range (``YYYY-MM``; a full date is cut to its month)."""

    area_id: Id
    start_month: str = Field(validation_alias=AliasChoices("start_month", "start_date", "start"))
    end_month: str = Field(validation_alias=AliasChoices("end_month", "end_date", "end"))
    source: str | None = Field(None, description="laads_download (default) or earth_engine_export")

    def months(self) -> tuple[str, str]:
        return self.start_month[:7], self.end_month[:7]


def _trace(request: Request) -> str | None:
    return request.scope.get("state", {}).get("trace_id")


def _wake(services: Services) -> None:
    services.wake()


async def _body(request: Request) -> bytes:
    return await request.body()


# ------------------------------------------------------------------- areas


@router.post("/areas", status_code=status.HTTP_201_CREATED)
async def create_area(request: Request, services: ServicesDep, _: IngestDep, name: str | None = None,
                      repair: bool = False) -> dict[str, Any]:
    """Create an area from a GeoJSON Polygon, MultiPolygon, Feature or FeatureCollection body."""
    settings = nl_jobs.nl_settings(services)
    parsed = await asyncio.to_thread(parse_area, await _body(request), repair=repair,
                                     limits=area_ops.limits(settings))

    def store() -> dict[str, Any]:
        with translate_errors("nightlights"), services.sessions.begin() as s:
            feature = area_ops.area_feature(area_ops.create_area(s, parsed, name=name))
        feature["properties"]["repaired"] = parsed.repaired
        return feature

    return await asyncio.to_thread(store)


@router.get("/areas")
async def list_areas(services: ServicesDep, _: ReadDep, bbox: BBoxQuery = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100, after: AfterQuery = 0) -> dict[str, Any]:
    """Areas as a FeatureCollection (``bbox=w,s,e,n`` filters; ``after`` pages by id)."""
    box = bbox  # checked (w, s, e, n) or None

    def read() -> list[dict[str, Any]]:
        with translate_errors("nightlights"), services.sessions() as s:
            return [area_ops.area_feature(a) for a in area_ops.list_areas(s, bbox=box, limit=limit, after=after)]

    return {"type": "FeatureCollection", "features": await asyncio.to_thread(read)}


@router.get("/areas/{area_id}")
async def get_area(area_id: IdPath, services: ServicesDep, _: ReadDep) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with translate_errors("nightlights"), services.sessions() as s:
            return area_ops.area_feature(area_ops.get_area(s, area_id))

    return await asyncio.to_thread(read)


@router.put("/areas/{area_id}")
async def update_area(area_id: IdPath, request: Request, services: ServicesDep, _: IngestDep,
                      name: str | None = None, repair: bool = False) -> dict[str, Any]:
    """Rename (``?name=``) and/or replace the geometry (GeoJSON body); a new geometry drops old results."""
    body = await _body(request)
    settings = nl_jobs.nl_settings(services)
    parsed = (await asyncio.to_thread(parse_area, body, repair=repair, limits=area_ops.limits(settings))
              if body.strip() else None)

    def write() -> tuple[dict[str, Any], bool]:
        with translate_errors("nightlights"), services.sessions.begin() as s:
            area, changed = area_ops.update_area(s, area_id, parsed, name=name)
            return area_ops.area_feature(area), changed

    feature, changed = await asyncio.to_thread(write)
    if changed:
        await purge_objects(services, area_id)
    feature["properties"]["geometry_changed"] = changed
    return feature


@router.delete("/areas/{area_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_area(area_id: IdPath, services: ServicesDep, _: IngestDep) -> Response:
    def remove() -> None:
        with translate_errors("nightlights"), services.sessions.begin() as s:
            area_ops.delete_area(s, area_id)

    await asyncio.to_thread(remove)
    await purge_objects(services, area_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -------------------------------------------------------------------- jobs


async def _submit(body: JobsIn, request: Request, services: Services, source: str | None) -> dict[str, Any]:
    start, end = body.months()
    req = await asyncio.to_thread(nl_jobs.submit, services, body.area_id, start, end,
                                  source=source or body.source, trace_id=_trace(request))
    _wake(services)
    return await asyncio.to_thread(nl_jobs.request_status, services, req.id)


@router.post("/nightlights/jobs", status_code=status.HTTP_202_ACCEPTED)
async def submit_jobs(body: JobsIn, request: Request, services: ServicesDep, _: IngestDep) -> dict[str, Any]:
    """One acquisition job per month, then one ``etl_processing`` job; returns the request and its jobs."""
    return await _submit(body, request, services, None)


@router.post("/earth-engine/export/", status_code=status.HTTP_202_ACCEPTED)
async def earth_engine_export(body: JobsIn, request: Request, services: ServicesDep,
                              _: IngestDep) -> dict[str, Any]:
    """The seed's endpoint: like ``POST /nightlights/jobs`` with source ``earth_engine_export``."""
    return await _submit(body, request, services, nl_jobs.EARTH_ENGINE)


@router.get("/nightlights/jobs")
async def list_jobs(services: ServicesDep, _: ReadDep, area_id: IdQuery = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    def read() -> list[dict[str, Any]]:
        reqs = nl_jobs.list_requests(services, area_id=area_id, limit=limit)
        return [nl_jobs.request_status(services, r.id) for r in reqs]

    return {"requests": await asyncio.to_thread(read)}


@router.get("/nightlights/jobs/{request_id}")
async def get_jobs(request_id: IdPath, services: ServicesDep, _: ReadDep) -> dict[str, Any]:
    """Status of a request: overall, per month (acquisition job, input), and its ``etl_processing`` job."""
    return await asyncio.to_thread(nl_jobs.request_status, services, request_id)


@router.post("/areas/{area_id}/uploads", status_code=status.HTTP_202_ACCEPTED)
async def upload(area_id: IdPath, month: Annotated[str, Query(pattern=MONTH_PATTERN, description="YYYY-MM")],
                 request: Request, services: ServicesDep,
                 _: IngestDep) -> dict[str, Any]:
    """A GeoTIFF (request body) of monthly radiance for the area; processed like any other input."""
    req = await submit_upload(services, area_id, month, await _body(request), trace_id=_trace(request))
    _wake(services)
    return await asyncio.to_thread(nl_jobs.request_status, services, req.id)


# ----------------------------------------------------------------- results


def _wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt:
        return fmt.lower() == "csv"
    return "text/csv" in request.headers.get("accept", "")


@router.get("/areas/{area_id}/timeseries", response_model=None)
async def timeseries(area_id: IdPath, request: Request, services: ServicesDep, _: ReadDep,
                     start: str | None = None, end: str | None = None,
                     format: str | None = None) -> Response | dict[str, Any]:
    """Monthly metrics (``?format=csv`` or ``Accept: text/csv`` for CSV)."""
    rows = await asyncio.to_thread(_series, services, area_id, start, end)
    if _wants_csv(request, format):
        return Response(nl_results.to_csv(rows, nl_results.TIMESERIES_FIELDS), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="area-{area_id}-timeseries.csv"'})
    return {"area_id": area_id, "timeseries": rows}


@router.get("/areas/{area_id}/statistics", response_model=None)
async def statistics(area_id: IdPath, request: Request, services: ServicesDep, _: ReadDep,
                     start: str | None = None, end: str | None = None,
                     format: str | None = None) -> Response | dict[str, Any]:
    """Summary of the time series (same formats as the time series)."""
    stats = nl_results.statistics(await asyncio.to_thread(_series, services, area_id, start, end))
    if _wants_csv(request, format):
        return Response(nl_results.to_csv([{"area_id": area_id, **stats}], ["area_id", *stats]),
                        media_type="text/csv")
    return {"area_id": area_id, **stats}


def _series(services: Services, area_id: int, start: str | None, end: str | None) -> list[dict[str, Any]]:
    with translate_errors("nightlights"), services.sessions() as s:
        area_ops.get_area(s, area_id)
        return nl_results.timeseries(s, area_id, start=start, end=end)


# ------------------------------------------------------------------- tiles


@router.get("/tiles/{area_id}/{month}/tilejson.json")
async def tilejson(area_id: IdPath, month: MonthPath, request: Request, services: ServicesDep,
                   _: ReadDep) -> dict[str, Any]:
    return await get_tilejson(services, area_id, month, str(request.base_url))


@router.get("/tiles/{area_id}/{month}/{z}/{x}/{y}.png", response_class=Response)
async def tile(area_id: IdPath, month: MonthPath, z: ZoomPath, x: TilePath, y: TilePath, services: ServicesDep,
               _: ReadDep) -> Response:
    """An XYZ tile of the month's composite (rendered on first request, then served from the store)."""
    png, cached = await get_tile(services, area_id, month, z, x, y)
    return Response(png, media_type="image/png",
                    headers={"Cache-Control": "public, max-age=86400", "X-Tile-Cache": "hit" if cached else "miss"})
