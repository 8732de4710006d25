"""Where earthkeep (cloud mask off) and blackmarblepy differ on ``bench/nightlights.py``'s scene, one step at a time.

    .venv/bin/python bench/nightlights_steps.py --archive /tmp/nl-1200 [--month 2023-03] [--tile-size 1200]

Reads the LAADS emulator's files that ``bench/nightlights.py --archive DIR`` left
(or writes them: about a minute a day's four tiles at 1200 cells). earthkeep's
side is the product's own code (``processing._compose`` on the LAADS path, flags 0
and 1 kept, no cloud mask, then ``zonal_metrics``). blackmarblepy 2026.6.1's side is
its steps for VNP46A2 collection 5200 done again here with the same libraries, so
that each can be switched off (it runs in our environment, without blackmarblepy):

1. each file: ``_FillValue`` -> NaN, ``Mandatory_Quality_Flag`` 2 and 255 -> NaN,
   ``scale_factor * data + offset`` in float64; the tile placed by
   ``from_bounds(*bounds of the tile in its blackmarbletiles.geojson, width, height)``;
2. the day's tiles merged with ``rasterio.merge.merge`` (what
   ``rioxarray.merge.merge_arrays`` calls), then clipped to the country as
   ``rio.clip`` does (``all_touched=False``: a cell is kept when its centre is in);
3. the median over the nights (NaN skipped), exactextract's ``sum`` and ``mean``
   per region.

Printed: the largest relative difference of sum or mean over the regions for each
variant. The merged mosaic is cut to the country's bounds (plus two cells) before
the nights are stacked, which changes no region's cells.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from exactextract import exact_extract
from rasterio import Affine
from rasterio.features import geometry_mask
from rasterio.io import MemoryFile
from rasterio.merge import merge
from rasterio.transform import from_bounds, rowcol
from shapely.geometry import Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nightlights as nb  # the scene and regions of bench/nightlights.py

GROUP = "HDFEOS/GRIDS/VIIRS_Grid_DNB_2d/Data Fields"
# blackmarblepy 2026.6.1, blackmarble/data/blackmarbletiles.geojson: the tiles' bounds (west, south, east, north)
GEOJSON = {
    "h21v08": (30.0001220703125, 0.0, 40.0001220703125, 10.0001220703125),
    "h21v09": (30.0001220703125, -10.0, 40.0001220703125, 0.0),
    "h22v08": (40.0001220703125, 0.0, 50.0001220703125, 10.0001220703125),
    "h22v09": (40.0001220703125, -10.0, 50.0001220703125, 0.0),
}
LATTICE = {k: (-180.0 + 10 * int(k[1:3]), 80.0 - 10 * int(k[4:6]), -170.0 + 10 * int(k[1:3]), 90.0 - 10 * int(k[4:6]))
           for k in GEOJSON}


def earthkeep(files: list[Path], regions: list[tuple[str, dict]]) -> dict[str, tuple[float, float]]:
    from earthkeep.nightlights.processing import _compose
    from earthkeep.nightlights.requests import LAADS
    from earthkeep.raster.blackmarble import Masking
    from earthkeep.raster.zonal import coverage_weights, zonal_metrics

    out = {}
    for name, g in regions:
        geom = shape(g)
        comp = _compose(geom, [(f, f.name) for f in files], LAADS, Masking(accepted_flags=(0, 1), mask_cloudy=False))
        m = zonal_metrics(comp.median, coverage_weights([geom], comp.grid)[0], threshold=0.5)
        out[name] = (m["sum_radiance"], m["mean_radiance"])
    return out


def tile(path: Path, bounds: dict[str, tuple[float, ...]]) -> tuple[np.ndarray, Affine]:
    """One file as blackmarblepy's ``_h5_to_geotiff`` makes it."""
    with h5py.File(path, "r") as h5:
        tile_id = f"h{h5.attrs['HorizontalTileNumber'].decode()}v{h5.attrs['VerticalTileNumber'].decode()}"
        ds = h5[GROUP]["DNB_BRDF-Corrected_NTL"]
        data = ds[:]
        fill = np.asarray(ds.attrs["_FillValue"]).flat[0]
        data = np.where(np.isclose(data, fill, equal_nan=True), np.nan, data)
        data = np.where(np.isin(h5[GROUP]["Mandatory_Quality_Flag"][:], [2, 255]), np.nan, data)
        data = ds.attrs.get("scale_factor", 1) * data + ds.attrs.get("offset", 0)
    return data, from_bounds(*bounds[tile_id], data.shape[1], data.shape[0])


def peer_steps(
    files: list[Path], regions: list[tuple[str, dict]], roi: BaseGeometry, *, bounds: dict, clip: str, snap: float
) -> dict[str, tuple[float, float]]:
    """blackmarblepy's composite and exactextract, with ``bounds`` for the tiles, ``clip`` 'centre' (as it
    does), 'none' or 'touched', and the result's corner and cell size snapped to a lattice of ``snap`` (0: not)."""
    days = sorted({f.name.split(".")[1] for f in files})
    w, s, e, n = roi.bounds
    daily, transform = [], None
    for day in days:
        files_of_day = [f for f in files if f.name.split(".")[1] == day]
        mems = []
        for path in files_of_day:
            data, t = tile(path, bounds)
            mem = MemoryFile()
            with mem.open(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype,
                          crs="EPSG:4326", transform=t) as dst:
                dst.write(data, 1)
            mems.append(mem)
        opened = [m.open() for m in mems]
        mosaic, full = merge(opened, nodata=np.nan)
        for d in opened:
            d.close()
        r0, c0 = rowcol(full, w, n)
        r1, c1 = rowcol(full, e, s)
        r0, c0 = max(r0 - 2, 0), max(c0 - 2, 0)
        arr = mosaic[0, r0 : r1 + 3, c0 : c1 + 3]
        transform = full * Affine.translation(c0, r0)
        if clip != "none":
            keep = geometry_mask([mapping(roi)], out_shape=arr.shape, transform=transform,
                                 all_touched=clip == "touched", invert=True)
            arr = np.where(keep, arr, np.nan)
        daily.append(arr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-NaN cells
        comp = np.nanmedian(np.stack(daily), axis=0)
    if snap:
        transform = Affine(snap, 0, round(transform.c / snap) * snap, 0, -snap, round(transform.f / snap) * snap)
    return zonal(comp, transform, regions)


def zonal(comp: np.ndarray, transform: Affine, regions: list[tuple[str, dict]]) -> dict[str, tuple[float, float]]:
    profile = {"driver": "GTiff", "width": comp.shape[1], "height": comp.shape[0], "count": 1, "dtype": "float64",
               "crs": "EPSG:4326", "transform": transform, "nodata": np.nan}
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(comp, 1)
        with mem.open() as ds:
            feats = [{"type": "Feature", "properties": {"name": n}, "geometry": g} for n, g in regions]
            rows = exact_extract(ds, feats, ["sum", "mean"], include_cols=["name"], output="pandas")
    return {r["name"]: (float(r["sum"]), float(r["mean"])) for _, r in rows.iterrows()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", type=Path, required=True, help="the emulator's files (bench/nightlights.py --archive)")
    ap.add_argument("--month", default="2023-03")
    ap.add_argument("--tile-size", type=int, default=1200)
    ap.add_argument("--grid", default="3x3")
    a = ap.parse_args()
    laads = nb.archive(a.archive, a.tile_size)
    files = sorted(p for day in nb.days_of(a.month) for p in laads.materialise(day))
    regions = nb.regions(a.grid)
    country = Polygon(nb.COUNTRY)
    res = 10.0 / a.tile_size
    ours = earthkeep(files, regions)
    variants: dict[str, Any] = {
        "blackmarblepy's steps as it runs them (GeoJSON bounds, centre clip)": {"bounds": GEOJSON, "clip": "centre"},
        "exact 10° tile bounds, centre clip": {"bounds": LATTICE, "clip": "centre"},
        "GeoJSON bounds, no clip": {"bounds": GEOJSON, "clip": "none"},
        "exact bounds, no clip": {"bounds": LATTICE, "clip": "none"},
        "exact bounds, clip by all touched cells": {"bounds": LATTICE, "clip": "touched"},
        "GeoJSON bounds, result snapped to the lattice, no clip": {"bounds": GEOJSON, "clip": "none", "snap": res},
        "GeoJSON bounds, snapped, centre clip to the country buffered by 1.5 cells": {
            "bounds": GEOJSON, "clip": "centre", "snap": res, "roi": country.buffer(1.5 * res)},
    }
    print(f"{len(files)} files, {len(regions)} regions; relative difference blackmarblepy's steps / earthkeep - 1")
    for label, v in variants.items():
        theirs = peer_steps(files, regions, v.get("roi", country), bounds=v["bounds"], clip=v["clip"],
                            snap=v.get("snap", 0.0))
        diffs = {k: (theirs[k][0] / ours[k][0] - 1, theirs[k][1] / ours[k][1] - 1) for k in ours}
        worst = max(max(abs(a), abs(b)) for a, b in diffs.values())
        print(f"  {label}: largest {worst:.2e}")
        print("    " + " ".join(f"{k} {a:+.1e}/{b:+.1e}" for k, (a, b) in diffs.items()))


if __name__ == "__main__":
    main()
