"""Forcing data as one CF-compliant dataset: wind (GFS) or surface currents (Copernicus Marine).

The time axis is merged across cycles: for each valid time the file of the
freshest forecast (newest cycle or daily run) is used. Longitudes follow the
bounding box (-180..180, or 0..360 when the box crosses the antimeridian),
latitudes ascend. Variables carry CF standard names (``eastward_wind``/
``northward_wind``, ``eastward_sea_water_velocity``/``northward_sea_water_velocity``)
so OpenDrift's ``reader_netCDF_CF_generic`` reads the exported file as it is.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from earthkeep.catalog.bbox import check_bbox
from earthkeep.catalog.tables import Item
from earthkeep.errors import InvalidInput, NotFound
from earthkeep.forcing.records import COLLECTIONS, data_type_of, items_of
from earthkeep.runtime import Services as _Services
from earthkeep.settings import load_settings

if TYPE_CHECKING:
    import xarray as xr

    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)
MAX_SPAN_DAYS = 40

WIND_VARS = {
    "u10": ("x_wind", "eastward_wind", "10 m eastward wind"),
    "v10": ("y_wind", "northward_wind", "10 m northward wind"),
}
CURRENT_VARS = {
    "uo": ("uo", "eastward_sea_water_velocity", "Eastward sea water velocity"),
    "vo": ("vo", "northward_sea_water_velocity", "Northward sea water velocity"),
}


def check_request(kind: str, start: datetime, end: datetime, bbox: Sequence[float] | None) -> tuple[str, Any]:
    """Validate an export request; return the data type and the box."""
    data_type = data_type_of(kind)
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("start and end need a time zone (e.g. 2024-01-01T00:00Z)")
    if end < start:
        raise InvalidInput("end is before start")
    if (end - start).days > MAX_SPAN_DAYS:
        raise InvalidInput(f"at most {MAX_SPAN_DAYS} days per export")
    return data_type, check_bbox(bbox) if bbox is not None else (-180.0, -90.0, 180.0, 90.0)


def freshest(items: Sequence[Item]) -> list[Item]:
    """One item per valid start: the one of the newest forecast date."""
    best: dict[datetime, Item] = {}
    for item in items:
        key = item.start_datetime
        assert key is not None
        current = best.get(key)
        if current is None or _run(item) > _run(current):
            best[key] = item
    return [best[k] for k in sorted(best)]


def _run(item: Item) -> datetime:
    return datetime.fromisoformat((item.properties or {}).get("forecast_date", "1970-01-01T00:00:00+00:00"))


async def load_forcing(services: Services, kind: str, start: datetime, end: datetime,
                       bbox: Sequence[float] | None = None) -> xr.Dataset:
    """The forcing of ``kind`` (``wind`` or ``currents``) over ``start..end`` and ``bbox``, in memory."""
    data_type, box = check_request(kind, start, end, bbox)
    items = await asyncio.to_thread(_items, services, COLLECTIONS[data_type], start, end)
    if not items:
        raise NotFound(f"no {kind} data between {start.isoformat()} and {end.isoformat()}; "
                       "run 'earthkeep forcing collect' or widen the period")
    with tempfile.TemporaryDirectory(prefix="earthkeep-export-") as tmp:
        paths = [await _fetch(services, item, Path(tmp)) for item in items]
        reader = _read_wind if data_type == "wind" else _read_currents
        return await asyncio.to_thread(reader, paths, start, end, box)


def open_dataset(kind: str, start: datetime, end: datetime, bbox: Sequence[float] | None = None, *,
                 services: Services | None = None) -> xr.Dataset:
    """Blocking form of :func:`load_forcing` (opens the configured services when none are given)."""
    own = services is None
    if services is None:

        services = _Services.open(load_settings())
    try:
        return asyncio.run(load_forcing(services, kind, start, end, bbox))
    finally:
        if own:
            services.close()


def _items(services: Services, collection: str, start: datetime, end: datetime) -> list[Item]:
    with services.sessions() as s:
        return freshest(items_of(s, collection, start=start, end=end))


async def _fetch(services: Services, item: Item, tmp: Path) -> Path:
    asset = next((a for a in item.assets if a.name == "data"), None)
    if asset is None:
        raise NotFound(f"item {item.item_id} has no data file")
    path = tmp / asset.store_key.replace("/", "_")
    with path.open("wb") as fh:
        async for chunk in services.store.stream(asset.store_key):
            fh.write(chunk)
    return path


def _read_wind(paths: list[Path], start: datetime, end: datetime, box: Any) -> xr.Dataset:
    import xarray as xr

    from earthkeep.raster.grib import open_wind

    parts = []
    for path in paths:
        ds = open_wind(path)
        ds = ds.drop_vars([c for c in ds.coords if c not in ("valid_time", "latitude", "longitude")])
        parts.append(_crop(ds, box))
    ds = xr.concat(parts, dim="valid_time").rename({"valid_time": "time", "latitude": "lat", "longitude": "lon"})
    ds = ds.rename({name: spec[0] for name, spec in WIND_VARS.items()})
    return _cf(ds.sortby("lat"), {spec[0]: spec for spec in WIND_VARS.values()}, "GFS 10 m wind (NOAA NCEP)")


def _read_currents(paths: list[Path], start: datetime, end: datetime, box: Any) -> xr.Dataset:
    import xarray as xr

    parts = []
    for path in paths:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            if "depth" in ds.dims:
                ds = ds.isel(depth=0, drop=True)
            parts.append(_crop(ds[["uo", "vo"]], box).load())
    ds = xr.concat(parts, dim="time")
    ds = ds.isel(time=~ds.get_index("time").duplicated(keep="last")).sortby("time")
    window = slice(start.astimezone(UTC).replace(tzinfo=None), end.astimezone(UTC).replace(tzinfo=None))
    ds = ds.sel(time=window).rename({"latitude": "lat", "longitude": "lon"})
    return _cf(ds.sortby("lat"), {spec[0]: spec for spec in CURRENT_VARS.values()},
               "Copernicus Marine surface currents")


def _crop(ds: xr.Dataset, box: Any) -> xr.Dataset:
    """Cut ``ds`` to the box, its longitudes in -180..180 (0..360 across the antimeridian)."""
    west, south, east, north = box
    lon = ds["longitude"]
    if west <= east:
        ds = ds.assign_coords(longitude=((lon + 180) % 360) - 180)
        lo, hi = west, east
    else:
        ds = ds.assign_coords(longitude=lon % 360)
        lo, hi = west % 360, east % 360
    ds = ds.sortby("longitude").sel(longitude=slice(lo, hi))
    lat = ds["latitude"]
    ds = ds.isel(latitude=((lat >= south) & (lat <= north)).values)
    if ds.sizes["longitude"] == 0 or ds.sizes["latitude"] == 0:
        raise InvalidInput(f"bbox {box} holds no grid point")
    return ds


def _cf(ds: xr.Dataset, specs: dict[str, tuple[str, str, str]], title: str) -> xr.Dataset:
    """CF attributes on coordinates and variables (OpenDrift reads these)."""
    ds["time"].attrs.update({"standard_name": "time", "long_name": "time", "axis": "T"})
    ds["lat"].attrs = {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"}
    ds["lon"].attrs = {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"}
    for name, (_, standard, long_name) in specs.items():
        ds[name] = ds[name].astype("float32")
        ds[name].attrs = {"standard_name": standard, "long_name": long_name, "units": "m s-1"}
    ds.attrs = {"Conventions": "CF-1.8", "title": title, "source": "earthkeep forcing export",
                "history": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} exported by earthkeep"}
    return ds


def write_netcdf(ds: xr.Dataset, path: Path) -> Path:
    """Write ``ds`` as compressed NetCDF-4 (time as hours since 1970-01-01)."""
    encoding: dict[str, dict[str, Any]] = {
        str(name): {"zlib": True, "complevel": 4, "dtype": "float32", "_FillValue": None} for name in ds.data_vars
    }
    encoding["time"] = {"units": "hours since 1970-01-01 00:00:00", "calendar": "standard", "dtype": "float64"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, engine="netcdf4", encoding=encoding)
    return path
