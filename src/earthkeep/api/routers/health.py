"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from earthkeep import __version__
from earthkeep.api.deps import ServicesDep
from earthkeep.errors import EarthkeepError

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    """The process is up (it does not check its backends: see /ready)."""
    return {"status": "ok", "version": __version__}


@router.get("/ready")
async def ready(services: ServicesDep) -> JSONResponse:
    """Catalog and store answer; 503 naming the failing part otherwise."""
    checks: dict[str, str] = {}
    try:
        await asyncio.to_thread(services.check_catalog)
        checks["catalog"] = "ok"
    except EarthkeepError as exc:
        checks["catalog"] = str(exc)
    try:
        await asyncio.wait_for(services.store.check(), timeout=10)
        checks["store"] = "ok"
    except (EarthkeepError, TimeoutError) as exc:
        checks["store"] = str(exc) or "timed out"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "unavailable", "checks": checks},
                        status_code=200 if ok else 503)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
