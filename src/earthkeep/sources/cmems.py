"""Copernicus Marine (CMEMS) surface currents through the ``copernicusmarine`` toolbox (v2).

The toolbox does its own HTTP (its authentication URL is hard-coded), so the
one call into it is :func:`subset`; everything else here is data and policy:
which dataset and variables, where credentials come from, how a period is cut
into chunks, and which failures are worth a retry (429, 5xx, connection
trouble) with exponential backoff. Tests replace :func:`subset` only
(:mod:`earthkeep.testbed.cmems` writes a NetCDF shaped like the real product).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from earthkeep.errors import InvalidInput, SourceUnavailable
from earthkeep.retry import Backoff, retry_async

if TYPE_CHECKING:
    from earthkeep.forcing.settings import ForcingSettings

log = structlog.get_logger(__name__)

SOURCE = "copernicus"
DEFAULT_DATASET = "cmems_mod_glo_phy-cur_anfc_0.083deg_PT6H-i"  # GLOBAL_ANALYSISFORECAST_PHY_001_024, 1/12°
VARIABLES = ("uo", "vo")
TOOLBOX_USER_ENV = "COPERNICUSMARINE_SERVICE_USERNAME"  # the toolbox's own variables
TOOLBOX_PASSWORD_ENV = "COPERNICUSMARINE_SERVICE_PASSWORD"
STORE_PREFIX = "forcing/cmems"
# Toolbox errors that a later attempt cannot fix.
PERMANENT_ERRORS = ("InvalidUsernameOrPassword", "DatasetNotFound", "DatasetVersionNotFound",
                    "VariableDoesNotExistInTheDataset", "CoordinatesOutOfDatasetBounds", "WrongDatetimeFormat",
                    "CredentialsCannotBeNone", "ProductNotFound")
_TRANSIENT = re.compile(r"\b(429|50[0-4])\b|too many requests|timed? ?out|temporar|connection|unavailable", re.I)


@dataclass(frozen=True)
class SubsetRequest:
    """One subset call: a dataset's variables in a box, a depth range and a time range, to one file."""

    dataset_id: str
    variables: tuple[str, ...]
    bbox: tuple[float, float, float, float]
    min_depth: float
    max_depth: float
    start: datetime
    end: datetime
    output_directory: Path
    output_filename: str


def subset(request: SubsetRequest, username: str, password: str) -> Path:
    """Run ``copernicusmarine.subset`` for ``request`` and return the NetCDF file it wrote (blocking)."""
    import copernicusmarine

    west, south, east, north = request.bbox
    response = copernicusmarine.subset(
        dataset_id=request.dataset_id, variables=list(request.variables),
        minimum_longitude=west, maximum_longitude=east, minimum_latitude=south, maximum_latitude=north,
        minimum_depth=request.min_depth, maximum_depth=request.max_depth,
        start_datetime=request.start.replace(tzinfo=None), end_datetime=request.end.replace(tzinfo=None),
        output_directory=request.output_directory, output_filename=request.output_filename,
        file_format="netcdf", username=username, password=password, overwrite=True, disable_progress_bar=True,
    )
    return Path(response.file_path)


def credentials(settings: ForcingSettings) -> tuple[str, str] | None:
    """``COPERNICUS_USERNAME``/``COPERNICUS_PASSWORD``, else the toolbox's own variables; None without."""
    user = settings.copernicus_username or os.environ.get(TOOLBOX_USER_ENV)
    secret = settings.copernicus_password.get_secret_value() if settings.copernicus_password else None
    secret = secret or os.environ.get(TOOLBOX_PASSWORD_ENV)
    return (user, secret) if user and secret else None


def day_chunks(start: datetime, end: datetime, days: int) -> list[tuple[datetime, datetime]]:
    """``start .. end`` cut into chunks of ``days`` days (the last may be shorter); ends are inclusive,
    one second before the next chunk starts."""
    if end <= start:
        raise InvalidInput("the currents period must end after it starts")
    out = []
    t = start
    while t < end:
        nxt = min(t + timedelta(days=days), end)
        out.append((t, nxt - timedelta(seconds=1)))
        t = nxt
    return out


def is_transient(exc: BaseException) -> bool:
    """True for rate limits, server errors and connection trouble; False for what a retry cannot fix."""
    if type(exc).__name__ in PERMANENT_ERRORS:
        return False
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return status == 429 or status >= 500
    return isinstance(exc, ConnectionError | TimeoutError) or bool(_TRANSIENT.search(str(exc)))


async def fetch_subset(request: SubsetRequest, creds: tuple[str, str], *, retries: int, backoff_s: float,
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Path:
    """Call :func:`subset` in a thread, retrying transient failures with exponential backoff and jitter.

    Raises :class:`SourceUnavailable` with the toolbox's message when retries are spent or the failure
    is permanent (bad credentials, unknown dataset or variable, box outside the dataset).
    """
    def logged(attempt: int, delay: float, exc: BaseException) -> None:
        log.warning("cmems.retry", dataset=request.dataset_id, attempt=attempt, delay_s=round(delay, 2), error=str(exc))

    backoff = Backoff(base_s=backoff_s, max_s=max(backoff_s, 1.0) * 64, jitter=0.2, sleep=sleep)
    try:
        return await retry_async(lambda: asyncio.to_thread(subset, request, *creds), attempts=retries + 1,
                                 retryable=is_transient, backoff=backoff, on_retry=logged)
    except Exception as exc:  # the toolbox raises many unrelated types
        if not is_transient(exc):
            raise SourceUnavailable(f"Copernicus Marine refused {request.dataset_id}: "
                                    f"{type(exc).__name__}: {exc}") from exc
        raise SourceUnavailable(f"Copernicus Marine still failing after {retries + 1} attempts: "
                                f"{type(exc).__name__}: {exc}") from exc


def store_key(dataset_id: str, day: datetime) -> str:
    """``forcing/cmems/<dataset>/<YYYYMMDD>.nc``."""
    return f"{STORE_PREFIX}/{dataset_id}/{day:%Y%m%d}.nc"


def file_id(dataset_id: str, day: datetime) -> str:
    return f"cmems.{dataset_id}.{day:%Y%m%d}"


def check_variables(variables: Sequence[str]) -> tuple[str, ...]:
    if not variables:
        raise InvalidInput("Copernicus Marine needs at least one variable (uo, vo)")
    return tuple(variables)
