"""A quick-look PNG of 10 m wind speed at one valid time, in Web Mercator (for maps like the dashboard's).

The freshest kept GFS file valid nearest the asked time (within ``MAX_OFFSET``) is read with the same code
as the NetCDF export (:func:`earthkeep.forcing.export.load_forcing`), the speed ``hypot(u, v)`` is
resampled (nearest cell) onto Web Mercator rows between +-85.0511 degrees, coloured with a rio-tiler
colormap from 0 to ``vmax`` m/s and written as an RGBA PNG. Its bounds are :data:`BOUNDS`
(``[west, south, east, north]``), which a Leaflet ``imageOverlay`` places exactly.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
from rasterio.io import MemoryFile
from rasterio.transform import from_bounds

from earthkeep.errors import NotFound
from earthkeep.forcing.export import load_forcing
from earthkeep.raster.tiles import Style
from earthkeep.runtime import Services

MAX_LAT = 85.0511287798066
BOUNDS = (-180.0, -MAX_LAT, 180.0, MAX_LAT)
MAX_OFFSET = timedelta(hours=3)


async def wind_quicklook(services: Services, valid_time: datetime, *, width: int = 720, vmax: float = 25.0,
                         colormap: str = "viridis") -> tuple[bytes, datetime]:
    """The PNG and the valid time it shows (the kept time nearest ``valid_time``)."""
    try:
        ds = await load_forcing(services, "wind", valid_time - MAX_OFFSET, valid_time + MAX_OFFSET)
    except NotFound:
        raise NotFound(f"no 10 m wind kept within {MAX_OFFSET} of {valid_time.isoformat()}") from None
    times = ds["time"].values.astype("datetime64[s]").astype(datetime)
    wanted = valid_time.replace(tzinfo=None)
    index = int(np.argmin([abs((t - wanted).total_seconds()) for t in times]))
    shown = times[index]
    u = np.asarray(ds["x_wind"].isel(time=index).values, dtype=np.float32)
    v = np.asarray(ds["y_wind"].isel(time=index).values, dtype=np.float32)
    lats = np.asarray(ds["lat"].values, dtype=np.float64)
    lons = np.asarray(ds["lon"].values, dtype=np.float64)
    png = render(np.hypot(u, v), lats, lons, width=width, vmax=vmax, colormap=colormap)
    return png, shown.replace(tzinfo=valid_time.tzinfo)


def render(speed: np.ndarray, lats: np.ndarray, lons: np.ndarray, *, width: int, vmax: float,
           colormap: str) -> bytes:
    """``speed[lat, lon]`` on a regular grid -> RGBA PNG ``width`` x ``width`` in Web Mercator."""
    rows = _mercator_rows(width)
    cols = (np.arange(width) + 0.5) / width * 360.0 - 180.0
    lon_wrapped = ((lons + 180.0) % 360.0) - 180.0
    order = np.argsort(lon_wrapped)
    ix = order[np.clip(np.searchsorted(lon_wrapped[order], cols), 0, len(lons) - 1)]
    lat_order = np.argsort(lats)
    iy = lat_order[np.clip(np.searchsorted(lats[lat_order], rows), 0, len(lats) - 1)]
    grid = speed[np.ix_(iy, ix)]
    lut = np.zeros((256, 4), dtype=np.uint8)
    for k, rgba in Style(vmax, colormap).lut().items():
        lut[k] = rgba
    valid = np.isfinite(grid)
    scaled = np.clip(np.where(valid, grid, 0) / vmax * 255.0, 0, 255).astype(np.uint8)
    rgba = lut[scaled]
    rgba[..., 3] = np.where(valid, 200, 0)
    half = 20037508.342789244  # Web Mercator half-width in metres: the image is georeferenced (EPSG:3857)
    transform = from_bounds(-half, -half, half, half, width, width)
    with MemoryFile() as mem:
        with mem.open(driver="PNG", width=width, height=width, count=4, dtype="uint8", crs="EPSG:3857",
                      transform=transform) as dst:
            dst.write(np.moveaxis(rgba, -1, 0))
        return bytes(mem.read())


def _mercator_rows(height: int) -> np.ndarray:
    """Latitudes of the row centres of a square Web Mercator image, north first."""
    y = (np.arange(height) + 0.5) / height  # 0 at the top
    return np.degrees(np.arctan(np.sinh(math.pi * (1.0 - 2.0 * y))))
