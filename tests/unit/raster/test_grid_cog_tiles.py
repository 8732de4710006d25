"""Lattice grids, COG output, GeoTIFF inputs resampled onto a grid, XYZ tiles."""

import warnings

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from earthkeep.errors import InvalidInput, NotFound
from earthkeep.raster.cog import write_cog
from earthkeep.raster.geotiff import inspect_geotiff, read_onto_grid
from earthkeep.raster.grid import BLACK_MARBLE_RES, Grid, snap
from earthkeep.raster.tiles import TMS, Style, render_tile, tile_bounds_ok, tilejson, zoom_range


def test_snap_aligns_on_the_global_lattice_and_windows_are_integer():
    g = snap((36.501, -1.499, 36.999, -1.001))
    assert g.west == pytest.approx(36.5) and g.north == pytest.approx(-1.0) and g.width == g.height == 120
    tile = Grid(30.0, 0.0, BLACK_MARBLE_RES, 2400, 2400)
    rows, cols, trows, tcols = g.window(tile)
    assert (rows, cols) == (slice(0, 120), slice(0, 120))
    assert (trows, tcols) == (slice(240, 360), slice(1560, 1680))
    assert g.window(Grid(0.0, 60.0, BLACK_MARBLE_RES, 10, 10)) is None
    assert g.row_areas_km2()[0] == pytest.approx(0.21463, rel=1e-4)  # (463.3 m)² at 1°S


def test_cog_is_tiled_with_overviews(tmp_path):
    g = snap((10, 5, 13, 8))
    band = np.random.default_rng(0).random(g.shape, dtype=np.float32)
    write_cog(tmp_path / "c.tif", [band], g, descriptions=["median_radiance"])
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.profile["tiled"]
        assert ds.overviews(1) and ds.crs.to_epsg() == 4326 and ds.descriptions == ("median_radiance",)
        np.testing.assert_array_equal(ds.read(1), band)


def _geotiff(path, data, crs, transform, nodata=None):
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1,
               "dtype": "float32", "crs": crs, "transform": transform, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.float32), 1)
    return path


def test_geotiff_on_the_grid_is_copied_and_projected_ones_are_resampled(tmp_path):
    g = snap((36.5, -1.5, 36.6, -1.4))
    data = np.arange(g.width * g.height, dtype=np.float32).reshape(g.shape)
    same = read_onto_grid(_geotiff(tmp_path / "a.tif", data, "EPSG:4326", g.transform), g)
    np.testing.assert_array_equal(same, data)
    from rasterio.transform import from_bounds
    from rasterio.warp import transform_bounds

    w, s, e, n = transform_bounds("EPSG:4326", "EPSG:3857", *g.bounds)
    merc = _geotiff(tmp_path / "m.tif", np.full((50, 50), 7.0), "EPSG:3857", from_bounds(w, s, e, n, 50, 50))
    out = read_onto_grid(merc, g)
    assert np.nanmin(out) == pytest.approx(7.0) and np.isfinite(out).mean() > 0.9


def test_bad_geotiffs_are_invalid_input(tmp_path):
    g = snap((36.5, -1.5, 36.6, -1.4))
    with pytest.raises(InvalidInput, match=r"not a readable GeoTIFF"):
        inspect_geotiff(b"II*\x00" + bytes(300), "upload.tif")
    with pytest.raises(InvalidInput, match=r"not a readable GeoTIFF"):
        read_onto_grid(b"definitely not a tiff", g, name="x.tif")
    far = _geotiff(tmp_path / "far.tif", np.ones((4, 4)), "EPSG:4326", snap((0, 0, 0.01, 0.01)).transform)
    with pytest.raises(InvalidInput, match=r"does not overlap"):
        read_onto_grid(far, g)
    good = _geotiff(tmp_path / "g.tif", np.ones(g.shape), "EPSG:4326", g.transform).read_bytes()
    with pytest.raises(InvalidInput, match=r"truncated.tif: .*(not a readable GeoTIFF|the file is corrupt)"):
        inspect_geotiff(good[: len(good) // 3], "truncated.tif")


def test_tiles_render_a_log_ramp_with_transparent_no_data(tmp_path):
    g = snap((10.0, 5.0, 11.0, 6.0))
    band = np.full(g.shape, 20.0, dtype=np.float32)
    band[: g.height // 2] = np.nan
    cog = write_cog(tmp_path / "c.tif", [band], g).read_bytes()
    low, high = zoom_range(g.bounds, g.res, 12)
    assert (low, high) == (8, 10)
    t = TMS.tile(10.5, 5.5, 9)
    assert tile_bounds_ok(g.bounds, 9, t.x, t.y) and not tile_bounds_ok(g.bounds, 9, 0, 0)
    png = render_tile(cog, 9, t.x, t.y, Style(vmax=100.0))
    assert png.startswith(b"\x89PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG tile has no geotransform
        with MemoryFile(png) as mem, mem.open() as ds:
            rgba = ds.read()
    assert rgba.shape == (4, 256, 256)
    alpha = rgba[3]
    assert (alpha == 0).any() and (alpha == 255).any()
    assert len({tuple(p) for p in rgba[:3, alpha == 255].T}) == 1  # one radiance, one colour
    with pytest.raises(NotFound, match=r"outside the composite"):
        render_tile(cog, 9, 0, 0, Style())
    with pytest.raises(InvalidInput, match=r"unknown colormap"):
        Style(colormap="nope").lut()
    doc = tilejson("x", "http://h/{z}/{x}/{y}.png", g.bounds, (8, 10))
    assert doc["tilejson"] == "3.0.0" and doc["minzoom"] == 8 and doc["center"][2] == 8
