"""Forcing data: the datasets available to drift models, their files, a CF NetCDF export, gaps."""

from __future__ import annotations

import asyncio
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from earthkeep.api.deps import ReadDep, ServicesDep, SessionDep, require
from earthkeep.api.params import BBoxQuery
from earthkeep.api.routers.items import check_range
from earthkeep.forcing.collect import gap_report
from earthkeep.forcing.domain import COLLECT
from earthkeep.forcing.records import DatasetQuery, dataset_for_download, list_datasets
from earthkeep.forcing.settings import forcing_config

router = APIRouter(prefix="/forcing", tags=["forcing"])


class DatasetOut(BaseModel):
    """A row of ``aggregator_datasets`` (the seed's columns, times in UTC) and where to download it."""

    id: str
    data_type: str | None
    source: str | None
    forecast_date: datetime | None
    forecast_cycle: str | None
    valid_time_start: datetime | None
    valid_time_end: datetime | None
    file_path: str | None
    file_size_bytes: int | None
    is_forecast: bool | None
    created_at: datetime | None
    last_accessed_at: datetime | None
    href: str


class GapOut(BaseModel):
    file_id: str
    valid_time: datetime
    reason: str
    attempts: int


@router.get("/datasets", response_model=list[DatasetOut])
def datasets(
    session: SessionDep, _: ReadDep,
    data_type: Annotated[Literal["wind", "ocean_currents", "currents"] | None, Query()] = None,
    start: Annotated[datetime | None, Query(description="valid at or after (ISO 8601 with zone)")] = None,
    end: Annotated[datetime | None, Query(description="valid at or before")] = None,
    is_forecast: Annotated[bool | None, Query(description="true: forecasts only; false: the analysis series")] = None,
    source: Annotated[Literal["noaa_gfs", "copernicus"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[DatasetOut]:
    """Available forcing files, by valid time (the freshest forecast first at equal valid time)."""
    check_range(start, end)
    rows = list_datasets(session, DatasetQuery(data_type, start, end, is_forecast, source, limit))
    return [DatasetOut(**{c: getattr(r, c) for c in DatasetOut.model_fields if c != "href"},
                       href=f"/forcing/datasets/{r.id}/file") for r in rows]


@router.get("/datasets/{dataset_id}/file")
async def dataset_file(dataset_id: str, services: ServicesDep, _: ReadDep) -> StreamingResponse:
    """Stream one forcing file from the store; records ``last_accessed_at``."""
    def touch() -> tuple[str, str | None]:
        with services.sessions.begin() as s:
            row = dataset_for_download(s, dataset_id)
            return row.file_path or "", row.data_type

    key, data_type = await asyncio.to_thread(touch)
    info = await services.store.head(key)
    media = "application/x-grib2" if data_type == "wind" else "application/x-netcdf"
    headers = {"Content-Length": str(info.size),
               "Content-Disposition": f'attachment; filename="{key.rsplit("/", 1)[-1]}"'}
    if info.sha256:
        headers["X-Checksum-Sha256"] = info.sha256
    return StreamingResponse(services.store.stream(key), media_type=media, headers=headers)


@router.get("/export")
async def export(
    services: ServicesDep, _: ReadDep,
    start: Annotated[datetime, Query(description="first valid time (ISO 8601 with zone)")],
    end: Annotated[datetime, Query(description="last valid time")],
    kind: Annotated[Literal["wind", "currents"], Query()] = "wind",
    bbox: BBoxQuery = None,
) -> FileResponse:
    """One CF-1.8 NetCDF (time merged across cycles, freshest forecast preferred) for OpenDrift."""
    from earthkeep.forcing.export import load_forcing, write_netcdf

    check_range(start, end)
    ds = await load_forcing(services, kind, start, end, bbox)
    handle, name = tempfile.mkstemp(prefix="earthkeep-forcing-", suffix=".nc")
    os.close(handle)
    path = await asyncio.to_thread(write_netcdf, ds, Path(name))
    filename = f"{kind}_{start:%Y%m%dT%H%M}_{end:%Y%m%dT%H%M}.nc"
    return FileResponse(path, media_type="application/x-netcdf", filename=filename,
                        background=BackgroundTask(path.unlink, missing_ok=True))


@router.get("/wind.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "10 m wind speed, Web Mercator"}})
async def wind_png(
    services: ServicesDep, _: ReadDep,
    valid_time: Annotated[datetime, Query(description="the valid time to show (ISO 8601 with zone); the "
                                                      "nearest kept one within 3 h is used")],
    width: Annotated[int, Query(ge=64, le=2048, description="pixels (the image is square)")] = 720,
    vmax: Annotated[float, Query(gt=0, le=100, description="wind speed (m/s) at the top of the colour scale")] = 25.0,
) -> Response:
    """A quick-look PNG of 10 m wind speed; bounds in ``X-Bounds`` (west,south,east,north), time in ``X-Valid-Time``."""
    from earthkeep.forcing.quicklook import BOUNDS, wind_quicklook

    check_range(valid_time, valid_time)
    png, shown = await wind_quicklook(services, valid_time, width=width, vmax=vmax)
    return Response(png, media_type="image/png", headers={
        "X-Valid-Time": shown.isoformat(), "X-Bounds": ",".join(f"{b:.6f}" for b in BOUNDS),
        "Cache-Control": "public, max-age=300", "Access-Control-Expose-Headers": "X-Valid-Time, X-Bounds"})


@router.get("/gaps", response_model=list[GapOut])
def gaps(services: ServicesDep, _: ReadDep) -> list[GapOut]:
    """What the 3-hourly wind series over ``HISTORICAL_DAYS`` lacks, and why."""
    report = gap_report(services, forcing_config(services.settings), now=datetime.now(UTC))
    return [GapOut(file_id=g.file_id, valid_time=g.valid_time, reason=g.reason, attempts=g.attempts) for g in report]


@router.post("/collect", status_code=202, dependencies=[Depends(require("admin"))])
def collect(services: ServicesDep) -> dict[str, object]:
    """Enqueue a collection now (joins one already pending or running)."""
    enq = services.queue.enqueue(COLLECT, {"history": True, "reason": "api"}, dedupe_key="forcing:collect")
    return {"job_id": enq.job.id, "created": enq.created}
