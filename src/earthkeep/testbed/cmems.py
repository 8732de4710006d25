"""A stand-in for the Copernicus Marine toolbox's ``subset`` (the toolbox cannot be faked on the network:
its authentication URL is hard-coded).

:class:`FakeCopernicus` has the signature of :func:`earthkeep.sources.cmems.subset`
and writes, with h5netcdf, the NetCDF the real
``cmems_mod_glo_phy-cur_anfc_0.083deg_PT6H-i`` subset gives: ``uo``/``vo``
(float32, m s-1, CF standard names) on ``time`` (6-hourly, instantaneous),
``depth`` (0.494 m), ``latitude``/``longitude`` (1/12° grid points inside the
box), with the product's coordinate attributes. It records every call and can
fail the next calls the way the service does (429, 503, bad credentials).

What it does not cover: the toolbox's own login, catalogue lookup, ARCO/Zarr
reads, and the service's exact error types beyond their names and messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from earthkeep.sources.cmems import SubsetRequest

STEP = 1 / 12
SURFACE_DEPTH = 0.494025


class TooManyRequests(Exception):
    """Like the toolbox's HTTP error for a 429 answer."""

    def __init__(self, status: int = 429) -> None:
        super().__init__(f"{status} Client Error: Too Many Requests" if status == 429 else f"{status} Server Error")
        self.response = type("Response", (), {"status_code": status})()


class InvalidUsernameOrPassword(Exception):
    """Same name as the toolbox's error for bad credentials."""


@dataclass
class FakeCopernicus:
    """Callable like :func:`earthkeep.sources.cmems.subset`; ``failures`` are raised by the next calls."""

    failures: list[BaseException] = field(default_factory=list)
    calls: list[SubsetRequest] = field(default_factory=list)
    users: list[str] = field(default_factory=list)

    def fail_next(self, errors: Iterable[BaseException]) -> None:
        self.failures.extend(errors)

    def __call__(self, request: SubsetRequest, username: str, password: str) -> Path:
        self.calls.append(request)
        self.users.append(username)
        if self.failures:
            raise self.failures.pop(0)
        return write_currents(request)


def grid_points(low: float, high: float) -> np.ndarray:
    """The 1/12° grid points (global grid from -180 / -80) inside ``low .. high``."""
    first = np.ceil(round((low + 180) / STEP, 6)) * STEP - 180
    count = int(np.floor(round((high - first) / STEP, 6))) + 1
    return np.round(first + np.arange(max(count, 1)) * STEP, 6)


def times(start: datetime, end: datetime) -> list[datetime]:
    """6-hourly instants in ``start .. end`` (inclusive)."""
    t = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while t.hour % 6 or t < start:
        t += timedelta(hours=1)
    out = []
    while t <= end:
        out.append(t)
        t += timedelta(hours=6)
    return out


def write_currents(request: SubsetRequest) -> Path:
    """Write the subset's NetCDF (h5netcdf) and return its path."""
    import xarray as xr

    west, south, east, north = request.bbox
    lat, lon, when = grid_points(south, north), grid_points(west, east), times(request.start, request.end)
    hours = np.array([(t - datetime(2000, 1, 1, tzinfo=UTC)).total_seconds() / 3600 for t in when])
    phase = hours[:, None, None, None] / 24 * 2 * np.pi
    uo = (0.3 * np.cos(np.radians(lat))[None, None, :, None] * np.sin(np.radians(lon) * 3 + phase)).astype("f4")
    vo = (0.2 * np.cos(np.radians(lon))[None, None, None, :] * np.cos(np.radians(lat) * 2 + phase)).astype("f4")
    depth = np.array([SURFACE_DEPTH], dtype="f4")
    ds = xr.Dataset(
        {"uo": (("time", "depth", "latitude", "longitude"), np.broadcast_to(uo, (len(when), 1, lat.size, lon.size))),
         "vo": (("time", "depth", "latitude", "longitude"), np.broadcast_to(vo, (len(when), 1, lat.size, lon.size)))},
        coords={"time": np.array([t.replace(tzinfo=None) for t in when], dtype="datetime64[ns]"),
                "depth": depth, "latitude": lat.astype("f4"), "longitude": lon.astype("f4")},
    )
    _attributes(ds, request)
    target = Path(request.output_directory) / request.output_filename
    target.parent.mkdir(parents=True, exist_ok=True)
    encoding = {v: {"dtype": "float32", "_FillValue": np.float32(np.nan)} for v in ("uo", "vo")}
    encoding["time"] = {"units": "seconds since 1970-01-01 00:00:00", "calendar": "gregorian", "dtype": "float64"}
    ds[[v for v in ("uo", "vo") if v in request.variables]].to_netcdf(target, engine="h5netcdf", encoding={
        k: v for k, v in encoding.items() if k in request.variables or k == "time"})
    return target


def _attributes(ds: object, request: SubsetRequest) -> None:
    ds.attrs.update({  # type: ignore[attr-defined]
        "Conventions": "CF-1.8", "title": "daily mean fields from Global Ocean Physics Analysis and Forecast "
        "updated Daily", "institution": "Mercator Ocean International", "source": "MOI GLO12",
        "references": "http://marine.copernicus.eu", "producer": "CMEMS - Global Monitoring and Forecasting Centre",
        "dataset_id": request.dataset_id,
    })
    coords = {
        "time": {"standard_name": "time", "long_name": "Time", "axis": "T"},
        "depth": {"standard_name": "depth", "long_name": "Depth", "units": "m", "positive": "down", "axis": "Z"},
        "latitude": {"standard_name": "latitude", "long_name": "Latitude", "units": "degrees_north", "axis": "Y"},
        "longitude": {"standard_name": "longitude", "long_name": "Longitude", "units": "degrees_east", "axis": "X"},
        "uo": {"standard_name": "eastward_sea_water_velocity", "long_name": "Eastward velocity", "units": "m s-1",
               "valid_min": np.float32(-5), "valid_max": np.float32(5)},
        "vo": {"standard_name": "northward_sea_water_velocity", "long_name": "Northward velocity", "units": "m s-1",
               "valid_min": np.float32(-5), "valid_max": np.float32(5)},
    }
    for name, attrs in coords.items():
        ds[name].attrs.update(attrs)  # type: ignore[index]
