"""VNP46A2 HDF5: masking of fill, quality and cloud, the monthly median, mosaics, corrupt files."""

from datetime import date

import h5py
import numpy as np
import pytest

from earthkeep.errors import InvalidInput
from earthkeep.raster.blackmarble import (
    GAP_FILLED,
    Granule,
    Masking,
    mask_radiance,
    monthly_composite,
    nan_median,
    open_granules,
)
from earthkeep.raster.grid import snap
from earthkeep.sources.blackmarble import granule_name
from earthkeep.testbed.laads import Scene, expected_on_grid, tile_centres, write_granule

DAY = date(2023, 1, 15)


def _granule(tmp_path, day=DAY, h=21, v=9, scene=None, size=24):
    name = granule_name(day, h, v)
    return write_granule(tmp_path / name, day, h, v, scene or Scene(), size=size), name


def test_the_file_has_the_real_layout(tmp_path):
    path, _ = _granule(tmp_path)
    with h5py.File(path) as f:
        g = f["HDFEOS/GRIDS/VNP_Grid_DNB/Data Fields"]
        rad = g["DNB_BRDF-Corrected_NTL"]
        assert rad.dtype == np.uint16 and rad.attrs["_FillValue"][0] == 65535
        assert rad.attrs["scale_factor"][0] == pytest.approx(0.1)
        assert g["Mandatory_Quality_Flag"].dtype == np.uint8 and g["QF_Cloud_Mask"].dtype == np.uint16
        assert f.attrs["WestBoundingCoord"][0] == 30.0 and f.attrs["NorthBoundingCoord"][0] == 0.0


def test_masking_drops_fill_poor_quality_and_cloudy_nights():
    raw = np.array([100, 65535, 200, 300, 400], dtype=np.uint16)
    quality = np.array([0, 255, 2, 1, 0], dtype=np.uint8)
    cloud = np.array([0b110010, 0, 0, 0b110010, (3 << 6) | 0b110010], dtype=np.uint16)
    out = mask_radiance(raw, quality, cloud, scale=0.1, offset=0.0, fill=65535, masking=Masking())
    np.testing.assert_allclose(out, [10.0, np.nan, np.nan, 30.0, np.nan])
    strict = mask_radiance(raw, quality, None, scale=0.1, offset=0.0, fill=65535,
                           masking=Masking(accepted_flags=(0,), mask_cloudy=False))
    np.testing.assert_allclose(strict, [10.0, np.nan, np.nan, np.nan, 40.0])


def test_a_granule_reads_masked_radiance_on_its_tile_grid(tmp_path):
    path, name = _granule(tmp_path)
    g = Granule(path, name=name)
    try:
        assert g.date == DAY and g.grid.bounds == (30.0, -10.0, 40.0, 0.0) and g.grid.width == 24
        values = g.read(slice(0, 24), slice(0, 24), Masking())
        lon, lat = tile_centres(21, 9, 24)
        layers = Scene().night(lon, lat, DAY)
        bad = (layers["cloud"] >> 6 >= 2) | (layers["quality"] > 1)
        assert np.isnan(values[bad]).all() and bad.any()
        expected = Scene().expected(lon, lat, DAY)
        np.testing.assert_allclose(values[~bad], expected[~bad], rtol=1e-6)
        assert np.isfinite(g.read(slice(0, 24), slice(0, 24), Masking(variable=GAP_FILLED))).sum() > 0
    finally:
        g.close()


def test_median_of_valid_nights_with_even_and_odd_counts():
    stack = np.array([[[1.0, np.nan, np.nan]], [[3.0, 4.0, np.nan]], [[10.0, 6.0, np.nan]],
                      [[np.nan, np.nan, np.nan]]], dtype=np.float32)
    med, n = nan_median(stack)
    np.testing.assert_allclose(med, [[3.0, 5.0, np.nan]])
    np.testing.assert_array_equal(n, [[3, 2, 0]])


def test_monthly_composite_mosaics_two_tiles_and_equals_the_scene(tmp_path):
    scene = Scene(always_cloudy=(39.6, -4.1, 39.8, -3.9))
    files = [_granule(tmp_path, date(2023, 3, d), h, 9, scene) for d in range(1, 11) for h in (21, 22)]
    with open_granules(files) as granules:
        grid = snap((39.2, -4.6, 40.7, -3.4), granules[0].grid.res)
        median, nights = monthly_composite(granules, grid, Masking())
    expected = expected_on_grid(scene, grid.west, grid.north, grid.res, grid.width, grid.height, date(2023, 3, 1))
    np.testing.assert_allclose(median, expected, rtol=1e-6)
    assert np.isnan(median).any() and (nights[np.isnan(median)] == 0).all()
    assert nights.max() <= 10 and nights[np.isfinite(median)].min() >= 1


def test_corrupt_and_foreign_files_are_invalid_input(tmp_path):
    bad = tmp_path / granule_name(DAY, 21, 9)
    bad.write_bytes(b"<html>login</html>" + bytes(100))
    with pytest.raises(InvalidInput, match=r"VNP46A2.A2023015.h21v09.*not a readable HDF5 file"):
        Granule(bad)
    other = tmp_path / granule_name(DAY, 22, 9)
    with h5py.File(other, "w") as f:
        f.create_dataset("HDFEOS/GRIDS/VNP_Grid_DNB/Data Fields/Something", data=np.zeros((4, 4)))
    with pytest.raises(InvalidInput, match=r"has no dataset 'Mandatory_Quality_Flag'"):
        Granule(other)
    path, name = _granule(tmp_path / "x")
    with pytest.raises(InvalidInput, match=r"not a readable HDF5"), open_granules([(path, name), (bad, bad.name)]):
        pytest.fail("a set with a corrupt granule was opened")
