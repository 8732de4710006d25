"""The one table from domain errors to HTTP status codes."""

from __future__ import annotations

import math

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

from earthkeep import errors as e
from earthkeep.logs import current_trace_id

log = structlog.get_logger(__name__)

STATUS: dict[type[e.EarthkeepError], int] = {
    e.UnsafePath: 400,
    e.PayloadTooLarge: 413,
    e.RateLimited: 429,
    e.InvalidInput: 422,
    e.NotFound: 404,
    e.Conflict: 409,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.StoreUnavailable: 503,
    e.SourceUnavailable: 503,
    e.TransferFailed: 502,
    e.IntegrityError: 502,
    e.ConfigError: 500,
}


def status_for(exc: e.EarthkeepError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _body(error: str, detail: object) -> dict[str, object]:
    return {"error": error, "detail": detail, "trace_id": current_trace_id()}


async def _earthkeep(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.EarthkeepError)
    code = status_for(exc)
    (log.error if code >= 500 else log.info)("api.error", path=request.url.path, status=code, error=str(exc))
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return JSONResponse(_body(type(exc).__name__, str(exc)), status_code=code, headers=headers or None)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [{"loc": list(err.get("loc", [])), "msg": err.get("msg"), "type": err.get("type")}
              for err in exc.errors()]
    return JSONResponse(_body("InvalidInput", detail), status_code=422)


async def _overflow(request: Request, exc: Exception) -> JSONResponse:
    """A number too large for a column or a C type that a parameter bound missed: the caller's fault."""
    log.warning("api.overflow", path=request.url.path, error=str(exc))
    return JSONResponse(_body("InvalidInput", f"a number in the request is out of range: {exc}"), status_code=422)


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    """The database refused a value (NUL in text, a number out of range): the request's fault, not ours."""
    assert isinstance(exc, DataError)
    log.info("api.data_error", path=request.url.path, error=str(exc.orig).splitlines()[0] if exc.orig else "")
    first = str(exc.orig).strip().splitlines()[0] if exc.orig else "a value the database cannot hold"
    return JSONResponse(_body("InvalidInput", f"a value in the request cannot be stored: {first}"), status_code=422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("api.unexpected", path=request.url.path, error=repr(exc), exc_info=exc)
    return JSONResponse(_body("InternalError", "unexpected error; see the server log"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.EarthkeepError, _earthkeep)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(OverflowError, _overflow)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(Exception, _unexpected)
