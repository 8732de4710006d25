"""GeoTIFF inputs (Earth Engine exports, user uploads): check, and resample onto a grid."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader, MemoryFile
from rasterio.warp import Resampling, reproject, transform_bounds

from earthkeep.errors import InvalidInput
from earthkeep.raster.grid import Grid


@dataclass(frozen=True)
class GeoTiffInfo:
    """What a checked GeoTIFF holds."""

    width: int
    height: int
    count: int
    crs: str
    bounds_wgs84: tuple[float, float, float, float]
    dtype: str


@contextlib.contextmanager
def _open(source: Path | bytes, name: str) -> Iterator[DatasetReader]:
    try:
        with contextlib.ExitStack() as stack:
            if isinstance(source, bytes | bytearray):
                ds = stack.enter_context(stack.enter_context(MemoryFile(bytes(source))).open())
            else:
                ds = stack.enter_context(rasterio.open(source))
            if ds.driver != "GTiff":
                raise InvalidInput(f"{name} is a {ds.driver} raster, not a GeoTIFF")
            yield ds
    except (RasterioError, NotGeoreferencedWarning) as exc:
        raise InvalidInput(f"{name} is not a readable GeoTIFF ({exc})") from exc


def inspect_geotiff(source: Path | bytes, name: str = "upload") -> GeoTiffInfo:
    """Open and check a GeoTIFF: georeferenced, at least one band, data readable."""
    with _open(source, name) as ds:
        if ds.crs is None:
            raise InvalidInput(f"{name} has no coordinate reference system; write it with one (EPSG:4326)")
        if ds.count < 1 or ds.width < 1 or ds.height < 1:
            raise InvalidInput(f"{name} holds no raster data")
        try:
            ds.read(1, out_shape=(1, min(ds.height, 64), min(ds.width, 64)))
        except RasterioError as exc:
            raise InvalidInput(f"{name}: its pixels cannot be read ({exc}); the file is corrupt") from exc
        bounds = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
        return GeoTiffInfo(ds.width, ds.height, ds.count, ds.crs.to_string(), tuple(bounds), ds.dtypes[0])


def read_onto_grid(source: Path | bytes, target: Grid, *, name: str = "GeoTIFF", band: int = 1) -> np.ndarray:
    """Band ``band`` resampled onto ``target`` (average of covered cells; NaN where no data).

    An input already on the target lattice (an aligned Earth Engine export) is copied unchanged.
    """
    info = inspect_geotiff(source, name)
    w, s, e, n = info.bounds_wgs84
    tw, ts, te, tn = target.bounds
    if w >= te or e <= tw or s >= tn or n <= ts:
        raise InvalidInput(f"{name} covers {info.bounds_wgs84}, which does not overlap the area {target.bounds}")
    out = np.full(target.shape, np.nan, dtype=np.float32)
    with _open(source, name) as ds:
        if band > ds.count:
            raise InvalidInput(f"{name} has {ds.count} band(s); band {band} was asked for")
        try:
            reproject(
                rasterio.band(ds, band), out, src_nodata=ds.nodata, dst_transform=target.transform,
                dst_crs="EPSG:4326", dst_nodata=np.nan, resampling=Resampling.average,
            )
        except RasterioError as exc:
            raise InvalidInput(f"{name}: its pixels cannot be read ({exc}); the file is corrupt") from exc
    return out
