"""XYZ map tiles (Web Mercator PNG) of a single-band COG, rendered with rio-tiler.

Radiance is shown on a log ramp from 0 to ``vmax`` (nW·cm⁻²·sr⁻¹) through a
named rio-tiler colormap; cells without data are transparent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import morecantile
import numpy as np
from rasterio.io import MemoryFile
from rio_tiler.colormap import cmap as colormaps
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData

from earthkeep.errors import InvalidInput, NotFound

TMS = morecantile.tms.get("WebMercatorQuad")
EQUATOR_M_PER_DEG = 111_319.49


@dataclass(frozen=True)
class Style:
    """How radiance becomes colour."""

    vmax: float = 100.0
    colormap: str = "inferno"

    def lut(self) -> dict[int, tuple[int, int, int, int]]:
        try:
            return colormaps.get(self.colormap)
        except Exception as exc:  # rio-tiler raises its own InvalidColorMapName
            raise InvalidInput(f"unknown colormap {self.colormap!r}; try one of: inferno, viridis, magma") from exc


def zoom_range(bounds: tuple[float, float, float, float], res_deg: float, max_zoom: int) -> tuple[int, int]:
    """Zooms worth rendering: from the area fitting one tile to two levels past the native cell size."""
    native = TMS.zoom_for_res(res_deg * EQUATOR_M_PER_DEG)
    top = min(max_zoom, native + 2)
    w, _, e, _ = bounds
    span = max(e - w, 1e-6)
    low = int(max(0, math.floor(math.log2(360.0 / span))))
    return min(low, top), top


def tile_bounds_ok(bounds: tuple[float, float, float, float], z: int, x: int, y: int) -> bool:
    """True when tile z/x/y exists and intersects ``bounds`` (lon/lat)."""
    if not (0 <= x < 2**z and 0 <= y < 2**z):
        return False
    tb = TMS.bounds(morecantile.Tile(x, y, z))
    w, s, e, n = bounds
    return tb.left < e and tb.right > w and tb.bottom < n and tb.top > s


def render_tile(cog: bytes, z: int, x: int, y: int, style: Style, *, tilesize: int = 256) -> bytes:
    """The PNG of tile z/x/y of band 1 of ``cog`` (NotFound when the tile misses the raster)."""
    with MemoryFile(cog) as mem, mem.open() as ds, Reader(None, dataset=ds) as reader:
        try:
            img = reader.tile(x, y, z, indexes=1, tilesize=tilesize)
        except TileOutsideBounds as exc:
            raise NotFound(f"tile {z}/{x}/{y} lies outside the composite") from exc
    return colorize(img, style).render(img_format="PNG", colormap=style.lut())


def colorize(img: ImageData, style: Style) -> ImageData:
    """Scale radiance to 1..255 on a log ramp (0 stays for no data)."""
    data = np.ma.getdata(img.array[0]).astype(np.float64)
    mask = np.ma.getmaskarray(img.array[0]) | ~np.isfinite(data)
    scaled = np.log1p(np.clip(np.nan_to_num(data), 0, None)) / math.log1p(style.vmax)
    byte = (1 + np.clip(scaled, 0, 1) * 254).astype(np.uint8)
    byte[mask] = 0
    return ImageData(np.ma.MaskedArray(byte[None], mask=mask[None]), bounds=img.bounds, crs=img.crs)


def tilejson(name: str, url_template: str, bounds: tuple[float, float, float, float],
             zooms: tuple[int, int], **extra: Any) -> dict[str, Any]:
    """A TileJSON 3.0.0 document."""
    w, s, e, n = bounds
    return {
        "tilejson": "3.0.0", "name": name, "scheme": "xyz", "tiles": [url_template],
        "minzoom": zooms[0], "maxzoom": zooms[1], "bounds": [w, s, e, n],
        "center": [(w + e) / 2, (s + n) / 2, zooms[0]], **extra,
    }
