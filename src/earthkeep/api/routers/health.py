"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from earthkeep import __version__
from earthkeep.api.deps import ReadDep, ServicesDep
from earthkeep.errors import EarthkeepError
from earthkeep.instances import listing

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    """The process is up (it does not check its backends: see /ready)."""
    return {"status": "ok", "version": __version__}


@router.get("/ready")
async def ready(services: ServicesDep) -> JSONResponse:
    """Catalog, store and (when configured) broker answer; 503 naming the failing part; cache down: degraded."""
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
    required, optional = _backends(services)
    for name, url in {**required, **optional}.items():
        checks[name] = await _reachable(name, url)
    ok = all(checks[name] == "ok" for name in checks if name not in optional)
    degraded = ok and any(checks[name] != "ok" for name in optional)
    status = "unavailable" if not ok else "degraded" if degraded else "ready"
    return JSONResponse({"status": status, "checks": checks}, status_code=200 if ok else 503)


def _backends(services: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The broker (required when observations go through NATS) and the cache (optional) this process uses."""
    s = services.settings
    try:
        ingest = s.section("ingest")
    except KeyError:
        ingest = None
    required: dict[str, str] = {}
    optional: dict[str, str] = {}
    nats = s.broker.nats_url or (ingest.nats_url if ingest is not None and ingest.broker == "nats" else None)
    if nats:
        (required if ingest is not None and ingest.broker == "nats" else optional)["broker"] = nats
    redis = s.broker.redis_url or (getattr(ingest, "redis_url", None) if ingest is not None else None)
    if redis:
        optional["cache"] = redis
    return required, optional


async def _reachable(name: str, url: str, timeout: float = 2.0) -> str:
    """"ok" when the server at ``url`` answers (NATS: its INFO line; Redis: PONG), else why not."""
    parts = urlsplit(url.split(",")[0])
    host, port = parts.hostname or "127.0.0.1", parts.port or (4222 if name == "broker" else 6379)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        try:
            if name == "cache":
                writer.write(b"PING\r\n")
                await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout)
        finally:
            writer.close()
    except (OSError, TimeoutError) as exc:
        return f"{name} at {host}:{port} unreachable ({exc or 'timed out'})"
    expected = (b"INFO",) if name == "broker" else (b"+PONG", b"-NOAUTH", b"-WRONGPASS")
    return "ok" if line.startswith(expected) else f"{name} at {host}:{port} answered {line[:40]!r}"


@router.get("/status/services")
async def running_services(services: ServicesDep, _: ReadDep) -> dict[str, Any]:
    """The `earthkeep serve` processes of this catalog: host, pid, roles, version, last heartbeat, alive."""
    rows = await asyncio.to_thread(listing, services)
    roles = sorted({r for row in rows if row["alive"] for r in row["roles"]})
    return {"services": rows, "roles_running": roles}


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
