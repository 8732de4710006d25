"""Request middleware: trace ids, body size limits, Prometheus counters."""

from __future__ import annotations

import time

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from earthkeep.logs import bind_trace, trace_id_from_headers


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("earthkeep_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=registry)
        self.latency = Histogram("earthkeep_http_request_seconds", "HTTP request latency", ["method", "route"],
                                 registry=registry)


class RequestContext:
    """ASGI middleware: binds the trace id, refuses oversized bodies (413), counts requests."""

    def __init__(self, app: ASGIApp, *, max_body: int, metrics: HttpMetrics) -> None:
        self.app, self.max_body, self.metrics = app, max_body, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        trace_id = trace_id_from_headers(headers)
        structlog.contextvars.clear_contextvars()
        bind_trace(trace_id)
        scope.setdefault("state", {})["trace_id"] = trace_id
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"") or \
                b"\x00" in scope.get("query_string", b""):
            await _refuse_nul(send, trace_id)
            return
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            await _too_large(send, self.max_body, trace_id)
            return
        status = {"code": 500}
        started = time.perf_counter()

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", trace_id.encode()))
            await send(message)

        try:
            await self.app(scope, _limited(receive, self.max_body), send_wrapped)
        except BodyTooLarge:
            status["code"] = 413
            await _too_large(send, self.max_body, trace_id)
        finally:
            route = route_label(scope)
            self.metrics.requests.labels(scope["method"], route, str(status["code"])).inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - started)


def route_label(scope: Scope) -> str:
    """The path template of the route that answered, ``unmatched`` for a path no route has.

    FastAPI's own routes put themselves in ``scope["route"]``; Starlette's plain routes (``/docs``,
    ``/redoc``, ``/openapi.json``) only leave their ``endpoint``, found back among the app's routes.
    Unknown paths share one label so that scanners cannot grow the metric's cardinality.
    """
    route = scope.get("route")
    if route is not None:
        return str(route.path)
    endpoint, app = scope.get("endpoint"), scope.get("app")
    if endpoint is not None and app is not None:
        for candidate in getattr(app, "routes", ()):
            if getattr(candidate, "endpoint", None) is endpoint:
                return str(candidate.path)
    return "unmatched"


class BodyTooLarge(Exception):
    pass


def _limited(receive: Receive, limit: int) -> Receive:
    seen = {"n": 0}

    async def wrapped() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            seen["n"] += len(message.get("body", b""))
            if seen["n"] > limit:
                raise BodyTooLarge(f"request body larger than {limit} bytes")
        return message

    return wrapped


async def _refuse_nul(send: Send, trace_id: str) -> None:
    """A NUL byte in the path or query: no id, name or filter holds one (and PostgreSQL text cannot)."""
    body = (f'{{"error":"InvalidInput","detail":"NUL bytes are not allowed in the URL",'
            f'"trace_id":"{trace_id}"}}').encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Send, limit: int, trace_id: str) -> None:
    body = (f'{{"error":"PayloadTooLarge","detail":"request body larger than {limit} bytes",'
            f'"trace_id":"{trace_id}"}}').encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
