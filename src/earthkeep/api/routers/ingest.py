"""Station observations: the collector, stations, queries, the generator and consumer stats.

``POST /observations`` (scope ``ingest``) answers 202 only once the broker has
durably accepted the batch; the ``/weather/...`` queries are read endpoints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from earthkeep.api.deps import ReadDep, ServicesDep, require
from earthkeep.api.params import IdQuery
from earthkeep.catalog.tables import ApiKey
from earthkeep.errors import NotFound, PayloadTooLarge, RateLimited, SourceUnavailable
from earthkeep.ingest import queries
from earthkeep.ingest.collector import parse_body
from earthkeep.ingest.deadletters import list_dead_letters
from earthkeep.ingest.generator import GeneratorParams
from earthkeep.ingest.models import Station
from earthkeep.ingest.runtime import IngestRuntime, runtime_for
from earthkeep.ingest.stations import get_station, list_stations, upsert_stations
from earthkeep.ingest.stats import read_stats
from earthkeep.logs import current_trace_id


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start in-process consumers (nats mode) and close the broker connection at shutdown."""
    services = getattr(app.state, "services", None)
    rt = runtime_for(services) if services is not None else None
    if rt is not None:
        rt.start_consumers(rt.settings.api_consumers)
    try:
        yield
    finally:
        if rt is not None:
            await rt.close()


router = APIRouter(tags=["weather"], lifespan=lifespan)
IngestKey = Annotated[ApiKey, Depends(require("ingest"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]


def _rt(services: Any) -> IngestRuntime:
    return runtime_for(services)


async def _read_body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/observations", status_code=202)
async def post_observations(request: Request, services: ServicesDep, key: IngestKey) -> JSONResponse:
    """Take one observation, a JSON array of them, or NDJSON (``Content-Type: application/x-ndjson``).

    202 once the broker durably accepted every valid record, with ``received`` =
    ``accepted`` (new) + ``duplicates`` (repeated in the request, or known before) +
    ``rejected``, and one ``errors`` entry (index, station_id, reason) per refused
    record; 422 when no record was valid; 413 for too many bytes or
    records; 429 with ``Retry-After`` over the key's rate; 503 with
    ``Retry-After`` when the broker cannot confirm (resending is safe).
    """
    rt = _rt(services)
    s = rt.settings
    body = await _read_body(request, s.max_body_bytes)
    if body is None:
        raise PayloadTooLarge(f"request body larger than {s.max_body_bytes} bytes")
    parsed = parse_body(body, request.headers.get("content-type"), max_records=s.max_batch)  # 413 BatchTooLarge
    wait = rt.limiter.take(key.id, max(parsed.total, 1))
    if wait > 0:
        raise RateLimited(f"API key {key.name!r} is over {s.rate_limit:g} observations/s", retry_after_s=wait)
    try:
        result = await (await rt.collector()).submit(parsed, trace_id=current_trace_id())
    except SourceUnavailable as exc:  # the broker could not confirm: resending is safe, soon
        exc.retry_after_s = exc.retry_after_s or 1.0
        raise
    status = 422 if result.rejected and not (result.accepted or result.duplicates) else 202
    return JSONResponse(result.to_json(), status_code=status)


@router.get("/observations/dead-letters")
def dead_letters(services: ServicesDep, _: IngestKey, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                 before_id: IdQuery = None, station_id: str | None = None) -> dict[str, Any]:
    """Refused records, newest first (page with ``before_id``)."""
    rows = list_dead_letters(services.engine, limit=limit, before_id=before_id, station_id=station_id)
    return {"dead_letters": rows, "next_before_id": rows[-1]["id"] if len(rows) == limit else None}


# ------------------------------------------------------------------ stations


@router.get("/stations")
def stations(services: ServicesDep, _: ReadDep) -> dict[str, Any]:
    """Every registered station."""
    with services.sessions() as s:
        return {"stations": [st.model_dump() for st in list_stations(s)]}


@router.get("/stations/{station_id}")
def station(station_id: str, services: ServicesDep, _: ReadDep) -> dict[str, Any]:
    with services.sessions() as s:
        return get_station(s, station_id).model_dump()


@router.post("/stations", status_code=201)
def add_stations(body: Annotated[Station | list[Station], Body()], services: ServicesDep,
                 _: AdminKey) -> dict[str, Any]:
    """Register (or update) one station or a list of them (scope ``admin``)."""
    items = body if isinstance(body, list) else [body]
    with services.sessions.begin() as s:
        n = upsert_stations(s, items)
    _rt(services).stations.refresh()
    return {"registered": n}


# ------------------------------------------------------------------- queries


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _cached(rt: IngestRuntime, station_id: str, kind: str, params: dict[str, Any], fn: Any) -> Response:
    if not rt.stations.known(station_id):
        raise NotFound(f"station {station_id!r} is not registered (see GET /stations)")
    body, hit = rt.cache.get_or_compute(station_id, kind, params, fn)
    return Response(body, media_type="application/json", headers={"X-Cache": "hit" if hit else "miss"})


@router.get("/weather/{station_id}")
def weather_raw(station_id: str, services: ServicesDep, _: ReadDep, start: datetime | None = None,
                end: datetime | None = None, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
                cursor: str | None = None) -> Response:
    """Raw observations of a station in time order; pass ``next`` back as ``cursor`` for the next page."""
    rt = _rt(services)
    start, end = _utc(start), _utc(end)
    limit = min(limit, rt.settings.query_max_rows)
    params = {"start": start and start.isoformat(), "end": end and end.isoformat(), "limit": limit,
              "cursor": cursor}
    return _cached(rt, station_id, "raw", params, lambda: queries.raw(
        rt.engine, station_id, start=start, end=end, limit=limit, cursor=cursor,
        timeout_ms=rt.settings.query_timeout_ms))


@router.get("/weather/aggregate/{station_id}")
def weather_aggregate(station_id: str, services: ServicesDep, _: ReadDep, start: datetime | None = None,
                      end: datetime | None = None) -> Response:
    """min/max/avg/count per measure over [start, end) (whole hours from the hourly rollup)."""
    rt = _rt(services)
    start, end = _utc(start), _utc(end)
    params = {"start": start and start.isoformat(), "end": end and end.isoformat()}
    return _cached(rt, station_id, "aggregate", params, lambda: queries.aggregate(
        rt.engine, station_id, start=start, end=end, timeout_ms=rt.settings.query_timeout_ms))


@router.get("/weather/timeseries/{station_id}")
def weather_timeseries(station_id: str, services: ServicesDep, _: ReadDep, start: datetime, end: datetime,
                       interval: str = "1h") -> Response:
    """Buckets of ``interval`` (30s, 5m, 1h, 1d, 1w) over [start, end), widened to whole buckets."""
    rt = _rt(services)
    start_utc, end_utc = _utc(start), _utc(end)
    assert start_utc is not None and end_utc is not None
    params = {"start": start_utc.isoformat(), "end": end_utc.isoformat(), "interval": interval}
    return _cached(rt, station_id, "timeseries", params, lambda: queries.timeseries(
        rt.engine, station_id, start=start_utc, end=end_utc, interval=interval,
        timeout_ms=rt.settings.query_timeout_ms, max_buckets=rt.settings.max_buckets, timescale=rt.timescale()))


# ------------------------------------------------------- generator, consumer


@router.post("/generator/start")
async def generator_start(services: ServicesDep, _: IngestKey,
                          params: Annotated[GeneratorParams | None, Body()] = None) -> dict[str, Any]:
    """Start simulated stations feeding the collector (replaces a running generator)."""
    status = await _rt(services).generator().start(params or GeneratorParams())
    return vars(status)


@router.post("/generator/stop")
async def generator_stop(services: ServicesDep, _: IngestKey) -> dict[str, Any]:
    return vars(await _rt(services).generator().stop())


@router.get("/generator/status")
async def generator_status(services: ServicesDep, _: ReadDep) -> dict[str, Any]:
    return vars(_rt(services).generator().status)


@router.get("/consumer/stats")
async def consumer_stats(services: ServicesDep, _: ReadDep) -> dict[str, Any]:
    """received, dropped in memory, dropped by the database, inserted, lag (nats mode) — all consumers."""
    rt = _rt(services)
    await rt.flush_stats()
    stats = await run_in_threadpool(read_stats, rt.engine)
    stats["broker"] = rt.settings.broker
    if rt.settings.broker == "nats":
        try:
            stats["lag"] = await rt.lag()
        except Exception as exc:
            stats["lag"] = None
            stats["lag_error"] = str(exc)
    return stats
