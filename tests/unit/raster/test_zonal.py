"""Cached coverage weights give exactextract's statistics, with both kernels (numba and numpy), which
agree bit for bit; metrics by hand; the choice of kernel; the cache."""

import os
import subprocess
import sys

import numpy as np
import pytest
from exactextract import exact_extract
from rasterio.io import MemoryFile
from shapely.geometry import MultiPolygon, Point, Polygon, box, mapping

from earthkeep.raster import zonal
from earthkeep.raster.grid import Grid, snap
from earthkeep.raster.zonal import (
    CoverageWeights,
    StackedWeights,
    WeightCache,
    coverage_weights,
    stack_weights,
    weighted_quantile,
    zonal_metrics,
    zonal_metrics_many,
)

GRID = Grid(west=10.0, north=5.0, res=0.01, width=300, height=200)
SHAPES = [
    Point(11.2, 4.1).buffer(0.37),
    Polygon([(10.05, 3.05), (10.93, 3.21), (10.41, 4.77), (10.05, 3.05)]),
    MultiPolygon([box(12.001, 3.503, 12.406, 3.9), box(12.5, 4.5, 12.77, 4.93)]),
]


@pytest.fixture(params=["numba", "numpy"])
def kernel(request, monkeypatch):
    """Run the test with each kernel, chosen as a deployment does (``EARTHKEEP_ZONAL_KERNEL``)."""
    monkeypatch.setenv("EARTHKEEP_ZONAL_KERNEL", request.param)
    return request.param


def _raster(seed=1):
    rng = np.random.default_rng(seed)
    values = (rng.gamma(0.6, 6.0, GRID.shape)).astype(np.float32)
    values[rng.random(GRID.shape) < 0.1] = np.nan
    return values


def _exactextract(values, geoms, ops, grid=GRID):
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": "float32",
        "crs": "EPSG:4326",
        "transform": grid.transform,
        "nodata": np.nan,
    }
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(values, 1)
        with mem.open() as ds:
            feats = [{"type": "Feature", "properties": {"fid": i}, "geometry": mapping(g)} for i, g in enumerate(geoms)]
            return exact_extract(ds, feats, ops, output="pandas")


def _assert_like_exactextract(m, row):
    """Sums differ from exactextract's only by the order of summation; exactextract gives the median in
    the raster's type (float32), ours rounds to the same float32."""
    assert m["sum_radiance"] == pytest.approx(row["sum"], rel=1e-12)
    assert m["mean_radiance"] == pytest.approx(row["mean"], rel=1e-12)
    assert np.float32(m["median_radiance"]) == row["median"]


def test_cached_weights_reproduce_exactextract_every_month(kernel):
    weights = coverage_weights(SHAPES, GRID)
    for seed in (1, 2, 3):  # three "months" on the same grid, one set of weights
        values = _raster(seed)
        ref = _exactextract(values, SHAPES, ["sum", "mean", "median", "count"])
        for w, (_, row) in zip(weights, ref.iterrows(), strict=True):
            _assert_like_exactextract(zonal_metrics(values, w, threshold=3.0), row)


def test_the_median_merges_equal_values_like_exactextract(kernel):
    values = np.round(_raster(4)).astype(np.float32)  # many ties
    ref = _exactextract(values, SHAPES, ["sum", "mean", "median"])
    for w, (_, row) in zip(coverage_weights(SHAPES, GRID), ref.iterrows(), strict=True):
        _assert_like_exactextract(zonal_metrics(values, w, threshold=1.0), row)


def test_integer_values_on_whole_cells_give_exactly_exactextracts_numbers(kernel):
    # cells covered wholly (boxes on the lines of a grid of 1/64°, coverage exactly 1): every sum adds
    # integers, exact in any order
    grid = Grid(west=10.0, north=5.0, res=1 / 64, width=256, height=128)
    boxes = [box(10.5, 3.5, 10.75, 4.0), box(11.0, 3.0, 13.5, 4.5), box(10.0, 4.75, 10.125, 4.875)]
    rng = np.random.default_rng(9)
    values = np.round(rng.gamma(0.6, 600.0, grid.shape)).astype(np.float32)
    values[rng.random(grid.shape) < 0.1] = np.nan
    ref = _exactextract(values, boxes, ["sum", "mean", "median", "count"], grid)
    for w, (_, row) in zip(coverage_weights(boxes, grid), ref.iterrows(), strict=True):
        assert (w.coverage == 1.0).all()
        m = zonal_metrics(values, w, threshold=1.0)
        assert m["sum_radiance"] == row["sum"] and m["mean_radiance"] == row["mean"]
        assert np.float32(m["median_radiance"]) == row["median"]  # (exactextract's median is a float32)


def test_lit_and_area_metrics_by_hand(kernel):
    grid = Grid(west=0.0, north=1.0, res=0.5, width=2, height=2)
    values = np.array([[1.0, 5.0], [np.nan, 10.0]], dtype=np.float32)
    nights = np.array([[3.0, 4.0], [0.0, 5.0]], dtype=np.float32)
    w = coverage_weights([box(0.25, 0.0, 1.0, 1.0)], grid)[0]  # half of the left column, all of the right
    m = zonal_metrics(values, w, threshold=4.0, nights=nights)
    area = grid.row_areas_km2()
    assert m["pixels"] == 4 and m["sum_radiance"] == pytest.approx(0.5 * 1 + 5 + 10)
    assert m["lit_pixels"] == pytest.approx(2.0)
    assert m["lit_area_km2"] == pytest.approx(area[0] + area[1])
    assert m["valid_area_km2"] == pytest.approx(0.5 * area[0] + area[0] + area[1])
    assert m["area_km2"] == pytest.approx(1.5 * (area[0] + area[1]))
    assert m["lit_fraction"] == pytest.approx((area[0] + area[1]) / (1.5 * area[0] + area[1]))
    assert m["mean_valid_nights"] == pytest.approx((0.5 * 3 + 4 + 0.5 * 0 + 5) / 3.0)


def test_an_area_without_valid_cells_has_no_radiance_but_an_area(kernel):
    w = coverage_weights([box(10.1, 4.0, 10.3, 4.2)], GRID)[0]
    m = zonal_metrics(np.full(GRID.shape, np.nan, np.float32), w, threshold=0.5)
    assert m["sum_radiance"] is None and m["median_radiance"] is None and m["lit_fraction"] is None
    assert m["valid_fraction"] == 0.0 and m["area_km2"] > 0


def _ties_of_every_kind(values, weights):
    """Make each area hold a partly covered cell equal to a fully covered one, two equal fully covered
    cells and two equal partly covered cells (values stay otherwise continuous: few ties)."""
    flat = values.reshape(-1)
    for w in weights:
        part, full = w.cells[w.coverage < 1.0], w.cells[w.coverage == 1.0]
        if part.size >= 3 and full.size >= 3:
            flat[full[0]], flat[full[2]], flat[part[2]] = flat[part[0]], flat[full[1]], flat[part[1]]


KINDS = ["float32", "few ties", "many ties", "halves", "signed zeros", "inf and -nan", "float64", "uint16"]


# areas of one cell (insertion sort), 100 cells (radix sort, one block of sums), 38,000 cells (deep
# pairwise sums), beside the irregular ones
KERNEL_SHAPES = [
    *SHAPES,
    box(10.1, 4.0, 10.3, 4.2),
    box(10.0001, 4.9999, 10.0002, 4.9998),
    box(11.9, 3.0, 12.0, 3.1),
    box(10.5, 3.0, 12.5, 4.9),
]


def _values_of_kind(kind, weights):
    values = _raster(5)
    if kind == "few ties":
        _ties_of_every_kind(values, weights)
    elif kind == "many ties":  # VNP46A2 radiance is stored in steps of 0.1
        values = (np.round(values * 10) / 10).astype(np.float32)
    elif kind == "halves":
        values = np.round(values * 2) / 2
    elif kind == "signed zeros":
        values = values - 2.0
        values[::3, ::2] = -0.0
        values[1::3, ::2] = 0.0
    elif kind == "inf and -nan":  # neither counts as a value
        values[::7, ::3] = np.inf
        values[np.isnan(values)] = -np.float32("nan")
    elif kind == "float64":
        values = values.astype(np.float64) * np.pi
    elif kind == "uint16":
        values = np.nan_to_num(values).astype(np.uint16)
    values[GRID.height - 140 :, :40] = np.nan if values.dtype.kind == "f" else values[0, 0]  # one area all NaN
    return values


def _nights():
    nights = np.random.default_rng(6).integers(0, 31, GRID.shape).astype(np.float32)
    nights[np.isnan(_raster(6))] = np.nan
    return nights


@pytest.mark.parametrize("kind", KINDS)
def test_the_batched_path_is_bit_for_bit_the_per_area_arithmetic(kind, kernel):
    weights = coverage_weights(KERNEL_SHAPES, GRID)
    values, nights = _values_of_kind(kind, weights), _nights()
    got = zonal_metrics_many(values, stack_weights(weights), threshold=1.0, nights=nights)
    for w, m in zip(weights, got, strict=True):
        v = values.reshape(-1)[w.cells].astype(np.float64)
        ok = np.isfinite(v)
        c, a = w.coverage[ok], w.cell_area_km2[ok]
        if c.size:  # exact equality: same elements summed in the same order
            assert m["sum_radiance"] == float(np.sum(c * v[ok]))
            assert m["median_radiance"] == weighted_quantile(v[ok], c, 0.5)
            assert m["lit_area_km2"] == float(np.sum(c[v[ok] > 1.0] * a[v[ok] > 1.0]))
        else:
            assert m["sum_radiance"] is None and m["median_radiance"] is None
        assert m["valid_area_km2"] == float(np.sum(c * a))
        n = nights.reshape(-1)[w.cells].astype(np.float64)
        known = np.isfinite(n)
        ck = w.coverage[known]
        assert m["mean_valid_nights"] == float(np.sum(ck * n[known])) / float(np.sum(ck))
        assert m == zonal_metrics(values, w, threshold=1.0, nights=nights)


def test_the_median_equals_exactextract_with_ties_between_partly_and_fully_covered_cells(kernel):
    weights = coverage_weights(SHAPES, GRID)
    for values in (_raster(7), (np.round(_raster(8) * 10) / 10).astype(np.float32)):
        _ties_of_every_kind(values, weights)
        ref = _exactextract(values, SHAPES, ["sum", "mean", "median"])
        for w, (_, row) in zip(weights, ref.iterrows(), strict=True):
            _assert_like_exactextract(zonal_metrics(values, w, threshold=1.0), row)


@pytest.mark.parametrize("kind", [*KINDS, "float16", "int32 beyond float32"])
@pytest.mark.parametrize("threshold", [1.0, -np.inf])
def test_the_numba_kernel_gives_the_numpy_paths_numbers(kind, threshold):
    weights = stack_weights(coverage_weights(KERNEL_SHAPES, GRID))
    if kind == "float16":  # not compiled: the numba choice falls back to numpy
        values = _raster(5).astype(np.float16)
    elif kind == "int32 beyond float32":  # float32 cannot hold them: the float64 sort
        values = (np.nan_to_num(_raster(5)) * 1e6).astype(np.int32) + 2**24
    else:
        values = _values_of_kind(kind, coverage_weights(KERNEL_SHAPES, GRID))
    compiled = zonal._compiled_kernel("numba", values.reshape(-1), None)
    assert (compiled is None) == (kind == "float16")  # numba is installed: every other dtype is compiled
    for nights in (_nights(), None, _nights().astype(np.float64)):
        fast = zonal_metrics_many(values, weights, threshold=threshold, nights=nights, kernel="numba")
        slow = zonal_metrics_many(values, weights, threshold=threshold, nights=nights, kernel="numpy")
        assert fast == slow  # every number bit for bit (-0.0 == 0.0: only a zero median's sign may differ)
        if kind in KINDS and values.dtype.kind == "f":  # the area of 10.1-10.3 °E is all NaN
            assert fast[3]["sum_radiance"] is None and fast[3]["median_radiance"] is None


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_the_areas_shared_among_threads_give_the_one_thread_numbers(threads):
    from earthkeep.raster import _zonal_numba

    weights = stack_weights(coverage_weights(KERNEL_SHAPES, GRID))
    flat, nights = _values_of_kind("many ties", coverage_weights(KERNEL_SHAPES, GRID)).reshape(-1), _nights()
    args = (flat, weights.cells, weights.coverage, weights.covered_km2, weights.offsets, 1.0, nights.reshape(-1), True)
    lanes, lane_offsets = _zonal_numba._lanes(weights.offsets, threads)
    assert sorted(lanes.tolist()) == list(range(len(weights))) and lane_offsets[-1] == len(weights)
    one = _zonal_numba.zonal_columns(*args)
    np.testing.assert_array_equal(_zonal_numba.zonal_columns_parallel(*args, threads), one)  # NaN == NaN here
    assert np.isfinite(one[5]).sum() == len(weights) - 1  # every median computed but the all-NaN area's


def test_threads_are_used_when_asked_for_and_free_else_the_calling_thread(monkeypatch):
    module = zonal._load_numba_kernel()
    launches = []
    real = module.zonal_columns_parallel

    def parallel(*args):
        launches.append(args[-1])
        return real(*args)

    monkeypatch.setattr(module, "zonal_columns_parallel", parallel)
    monkeypatch.setattr(module, "threads", lambda: 2)  # (as on two cores, whatever this machine has)
    weights = stack_weights(coverage_weights(KERNEL_SHAPES, GRID))
    values = _raster(5)
    one = zonal_metrics_many(values, weights, threshold=1.0, kernel="numba")
    assert launches == []  # EARTHKEEP_ZONAL_THREADS is 1 by default
    monkeypatch.setenv("EARTHKEEP_ZONAL_THREADS", "3")
    assert zonal_metrics_many(values, weights, threshold=1.0, kernel="numba") == one
    assert launches == [2]  # at most numba's threads
    with zonal._parallel_lock:  # as if another thread were in the parallel kernel
        assert zonal_metrics_many(values, weights, threshold=1.0, kernel="numba") == one
    monkeypatch.setattr(zonal, "_PARALLEL_CELLS", 1 << 62)  # too few cells to share out
    assert zonal_metrics_many(values, weights, threshold=1.0, kernel="numba") == one
    assert launches == [2]
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("EARTHKEEP_ZONAL_THREADS", bad)
        with pytest.raises(ValueError, match="EARTHKEEP_ZONAL_THREADS"):
            zonal_metrics_many(values, weights, threshold=1.0, kernel="numba")


def test_the_kernel_is_chosen_by_name_or_environment_and_numpy_is_the_fallback(monkeypatch):
    weights = coverage_weights(SHAPES, GRID)
    values = _raster(3)
    expected = zonal_metrics_many(values, weights, threshold=1.0, kernel="numpy")
    monkeypatch.setenv("EARTHKEEP_ZONAL_KERNEL", "cuda")
    with pytest.raises(ValueError, match="auto, numba, numpy"):
        zonal_metrics_many(values, weights, threshold=1.0)
    assert zonal_metrics_many(values, weights, threshold=1.0, kernel="numba") == expected  # the argument wins
    zonal._load_numba_kernel.cache_clear()
    monkeypatch.setitem(sys.modules, "earthkeep.raster._zonal_numba", None)  # as if numba were not installed
    try:
        for name in ("auto", "numpy", " Auto "):
            monkeypatch.setenv("EARTHKEEP_ZONAL_KERNEL", name)
            assert zonal_metrics_many(values, weights, threshold=1.0) == expected
        with pytest.raises(RuntimeError, match="numba cannot be loaded"):
            zonal_metrics_many(values, weights, threshold=1.0, kernel="numba")
    finally:
        zonal._load_numba_kernel.cache_clear()


def test_weights_of_different_grids_cannot_be_stacked():
    a = coverage_weights(SHAPES[:1], GRID)
    b = coverage_weights(SHAPES[:1], snap((11.0, 3.9, 11.5, 4.4), 0.01))
    with pytest.raises(ValueError, match="different grids"):
        stack_weights(a + b)
    assert zonal_metrics_many(_raster(), [], threshold=1.0) == []


def test_weighted_quantile_matches_the_type_7_quantile_with_equal_weights():
    x = np.array([5.0, 1.0, 9.0, 3.0])
    assert weighted_quantile(x, np.ones(4), 0.5) == pytest.approx(np.quantile(x, 0.5))
    assert weighted_quantile(x, np.ones(4), 0.9) == pytest.approx(np.quantile(x, 0.9))
    assert np.isnan(weighted_quantile(np.array([]), np.array([]), 0.5))


def test_weights_survive_serialisation_and_the_cache_is_bounded():
    w = coverage_weights(SHAPES[:1], snap((11.0, 3.9, 11.5, 4.4), 0.01))[0]
    data = w.to_bytes()
    back = CoverageWeights.from_bytes(data)
    np.testing.assert_array_equal(back.cells, w.cells)
    np.testing.assert_array_equal(back.coverage, w.coverage)
    np.testing.assert_array_equal(back.cell_area_km2, w.cell_area_km2)
    assert back.grid_digest == w.grid_digest
    for bad in (data[:-8], data + bytes(8), b"PK\x03\x04" + data[4:], b""):
        with pytest.raises(ValueError, match="coverage weights"):
            CoverageWeights.from_bytes(bad)
    cache = WeightCache(max_entries=2)
    for k in ("a", "b", "c"):
        cache.put(k, w)
    assert cache.get("a") is None and cache.get("c") is w and (cache.hits, cache.misses) == (1, 1)
    cache.drop(lambda k: k == "c")
    assert cache.get("c") is None


def test_stacked_weights_survive_serialisation_and_damage_is_refused():
    st = stack_weights(coverage_weights(KERNEL_SHAPES, GRID))
    data = st.to_bytes()
    back = StackedWeights.from_bytes(data)
    for name in ("cells", "coverage", "covered_km2", "offsets", "area_km2"):
        np.testing.assert_array_equal(getattr(back, name), getattr(st, name))
    assert back.grid_digest == st.grid_digest and len(back) == len(st)
    values = _raster(5)
    assert zonal_metrics_many(values, back, threshold=1.0) == zonal_metrics_many(values, st, threshold=1.0)
    empty = stack_weights([])
    assert len(StackedWeights.from_bytes(empty.to_bytes())) == 0
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01  # one bit of the cells or coverage
    unordered = StackedWeights(st.cells, st.coverage, st.covered_km2, st.offsets[::-1].copy(), st.area_km2, "g")
    bad = {
        "cut": data[:-8],
        "padded": data + bytes(8),
        "magic": b"EKCW" + data[4:],
        "empty": b"",
        "checksum": bytes(flipped),
        "offsets": unordered.to_bytes(),
        "per-area weights": coverage_weights(SHAPES[:1], GRID)[0].to_bytes(),
    }
    for blob in bad.values():
        with pytest.raises(ValueError, match="stacked coverage weights"):
            StackedWeights.from_bytes(blob)


@pytest.mark.parametrize("threads", ["1", "2"])
def test_the_warm_up_compiles_what_the_nightlights_jobs_call(threads):
    """In a fresh process: after ``warm_up`` the metrics of float32 composites, with weights stacked in memory
    or read back from the store (and with ``EARTHKEEP_ZONAL_THREADS=2`` on numba's threads), find their
    compiled code ready (numba compiles nothing more)."""
    code = """
import numpy as np
from shapely.geometry import box
from earthkeep.raster import zonal
from earthkeep.raster.grid import snap
assert zonal.warm_up() is True and zonal.warm_up() is True
module = zonal._load_numba_kernel()
kernels = (module.zonal_columns, module.zonal_columns_parallel)
ready = [len(k.signatures) for k in kernels]
grid = snap((36.0, -1.5, 37.0, -0.5), 1 / 240)
w = zonal.coverage_weights([box(36.1, -1.4, 36.9, -0.6), box(36.5, -1.0, 37.0, -0.5)], grid)
assert sum(x.cells.size for x in w) >= zonal._PARALLEL_CELLS
values = np.random.default_rng(1).random(grid.shape, dtype=np.float32)
nights = np.full(grid.shape, 5, np.float32)
zonal.zonal_metrics(values, w[0], threshold=0.5, nights=nights)
zonal.zonal_metrics_many(values, zonal.StackedWeights.from_bytes(zonal.stack_weights(w).to_bytes()),
                         threshold=0.5, nights=nights)
zonal.zonal_metrics_many(values, w, threshold=0.5, nights=nights)
print(*ready, *(len(k.signatures) for k in kernels))
"""
    env = {**os.environ, "EARTHKEEP_ZONAL_KERNEL": "auto", "EARTHKEEP_ZONAL_THREADS": threads, "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    serial, parallel, serial_after, parallel_after = (int(x) for x in out.stdout.split())
    assert serial >= 2 and (serial_after, parallel_after) == (serial, parallel)
    assert parallel >= (2 if threads == "2" else 0)


def test_the_warm_up_says_when_the_numpy_path_will_be_used(monkeypatch):
    monkeypatch.setattr(zonal, "_warmed", None)
    monkeypatch.setenv("EARTHKEEP_ZONAL_KERNEL", "numpy")
    assert zonal.warm_up() is False
    assert zonal.warm_up() is False  # decided once per process
