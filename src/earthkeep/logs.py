"""Structured JSON logs with ``service``, ``role`` and ``trace_id``.

``configure_logging`` is called by the CLI and the service entry points, never
at import. Trace ids come from ``traceparent`` or ``X-Request-ID`` headers (or
are generated), are bound with :func:`bind_trace`, and travel inside jobs and
events so one request can be followed through every log line it causes.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Mapping

import structlog

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def configure_logging(
    level: str = "INFO", *, service: str = "earthkeep", role: str = "all", fmt: str = "json"
) -> None:
    """Route structlog and stdlib logging to stderr as JSON lines or human lines.

    ``fmt`` is ``json``, ``console`` or ``auto`` (human lines when stderr is a
    terminal, JSON otherwise). Library chatter (httpx, alembic, apscheduler) is
    kept at WARNING unless ``level`` is DEBUG.
    """
    if fmt == "auto":
        fmt = "console" if _isatty(sys.stderr) else "json"
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=_isatty(sys.stderr))
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _static_fields(service, role),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[
        structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "apscheduler", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


class _StderrLogger:
    """Writes each line to whatever ``sys.stderr`` is now (tests and CLIs swap it)."""

    def __init__(self, *_: object) -> None:
        pass

    def msg(self, message: str) -> None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler bound to the current ``sys.stderr`` at every record."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def _static_fields(service: str, role: str) -> structlog.types.Processor:
    def add(_: object, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
        event.setdefault("service", service)
        event.setdefault("role", role)
        return event

    return add


def trace_id_from_headers(headers: Mapping[str, str]) -> str:
    """The trace id of a request: from ``traceparent``, else ``X-Request-ID``, else new."""
    tp = headers.get("traceparent", "").strip().lower()
    m = _TRACEPARENT.match(tp)
    if m and m.group(1) != "0" * 32:
        return m.group(1)
    rid = headers.get("x-request-id", "").strip()
    if _REQUEST_ID.match(rid):
        return rid
    return new_trace_id()


def new_trace_id() -> str:
    return uuid.uuid4().hex


def bind_trace(trace_id: str | None) -> None:
    """Bind ``trace_id`` to every log line of the current task/thread context."""
    structlog.contextvars.bind_contextvars(trace_id=trace_id)


def current_trace_id() -> str | None:
    return structlog.contextvars.get_contextvars().get("trace_id")
