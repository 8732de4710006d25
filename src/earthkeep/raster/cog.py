"""Cloud-optimised GeoTIFFs (COG) written with rasterio's GDAL ``COG`` driver."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio

from earthkeep.raster.grid import Grid

COG_OPTIONS = {"compress": "DEFLATE", "predictor": "3", "blocksize": 256, "overview_resampling": "average"}


def write_cog(path: Path, bands: Sequence[np.ndarray], grid: Grid, *,
              descriptions: Sequence[str] | None = None) -> Path:
    """Write float32 ``bands`` on ``grid`` (EPSG:4326, NaN = no data) as a COG with overviews."""
    if not bands:
        raise ValueError("a COG needs at least one band")
    for b in bands:
        if b.shape != grid.shape:
            raise ValueError(f"band shape {b.shape} does not match grid {grid.shape}")
    profile = {
        "driver": "COG", "width": grid.width, "height": grid.height, "count": len(bands),
        "dtype": "float32", "crs": "EPSG:4326", "transform": grid.transform, "nodata": float("nan"),
        **COG_OPTIONS,
    }
    with rasterio.open(path, "w", **profile) as dst:
        for i, band in enumerate(bands, start=1):
            dst.write(band.astype("float32", copy=False), i)
            if descriptions:
                dst.set_band_description(i, descriptions[i - 1])
    return path
