"""The Earth Engine stand-in, at the narrowest edge: the adapter function itself.

``earthkeep.sources.blackmarble.earth_engine_download_url(export, credentials)``
is the only code that calls ``earthengine-api`` (whose client cannot be pointed
at a local server: it needs Google's discovery documents and OAuth). Tests
replace exactly that function with an :class:`EarthEngineStandIn`, which
answers the same request the way Earth Engine would: the median of the
quality-masked nights of the month (cut from the same :class:`~earthkeep.testbed.laads.Scene`
as the LAADS emulator), clipped to the area, on the requested ``crs_transform``
and ``dimensions``, written as a float32 GeoTIFF into a directory served over
loopback, whose URL it returns. Everything after the URL (the transfer engine,
the store, processing) is the real code.

Covered: collection/band names, the grid contract (EPSG:4326, ``crs_transform``,
``dimensions``), quality masking, clipping, a corrupt export (``corrupt=True``
serves bytes that are not a GeoTIFF). Not covered: Earth Engine's own request
limits and errors, authentication.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.features import geometry_mask

from earthkeep.errors import InvalidInput
from earthkeep.raster.blackmarble import Masking, mask_radiance, nan_median
from earthkeep.sources.blackmarble import EARTH_ENGINE, EarthEngineCredentials, EarthEngineExport
from earthkeep.testbed.laads import SCALE, Scene


@dataclass
class EarthEngineStandIn:
    """Callable with the adapter's signature; serve ``directory`` at ``base_url``."""

    scene: Scene
    directory: Path
    base_url: str
    corrupt: bool = False
    calls: list[EarthEngineExport] = field(default_factory=list)
    _n: itertools.count = field(default_factory=itertools.count)

    def __call__(self, export: EarthEngineExport, credentials: EarthEngineCredentials) -> str:
        if export.band not in EARTH_ENGINE.bands:
            raise InvalidInput(f"Earth Engine: band {export.band!r} is not in {EARTH_ENGINE.collection}")
        self.calls.append(export)
        name = f"export-{next(self._n)}.tif"
        path = self.directory / name
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.corrupt:
            path.write_bytes(b"II*\x00" + b"\x00" * 512)
        else:
            self._write(export, path)
        return f"{self.base_url.rstrip('/')}/{name}"

    def _write(self, export: EarthEngineExport, path: Path) -> None:
        width, height = export.dimensions
        transform = Affine(*export.crs_transform)
        cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        lon, lat = transform * (cols, rows)
        masking = Masking(accepted_flags=tuple(export.accepted_flags), mask_cloudy=export.mask_cloudy)
        nights = []
        for day in _days(export.start, export.end):
            layers = self.scene.night(lon, lat, day)
            raw = layers["radiance" if export.band == EARTH_ENGINE.bands[0] else "gap_filled"]
            nights.append(mask_radiance(raw, layers["quality"], layers["cloud"], scale=SCALE, offset=0.0,
                                        fill=65535, masking=masking))
        median, _ = nan_median(np.stack(nights))
        outside = geometry_mask([export.geometry], out_shape=(height, width), transform=transform, all_touched=True)
        median[outside] = np.nan
        profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "float32",
                   "crs": "EPSG:4326", "transform": transform, "nodata": float("nan"), "compress": "deflate"}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(median, 1)


def _days(start: str, end: str) -> list[date]:
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    return [date.fromordinal(o) for o in range(first.toordinal(), last.toordinal())]
