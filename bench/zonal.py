"""Zonal statistics of 100 areas x 12 months on a 5000 x 5000 raster, and map-tile rendering.

One command::

    .venv/bin/python bench/zonal.py [--areas 100] [--months 12] [--size 5000] [--step 0.1] [--skip-rasterstats]
                                    [--kernels numba numpy]

Compared in the same run, on the same rasters and polygons (the areas as recorded
in the catalog), all timed with ``time.perf_counter``:

* **earthkeep (cached weights)**: what a worker does for a request of the 100
  areas: ``nightlights.processing.stacked_area_weights``, the set's stacked
  weights read from the store in one object (cached by an earlier run; a fresh
  worker has nothing in memory), then per month one ``zonal_metrics_many`` call
  for all areas with the valid-nights raster, as ``process_month`` passes it
  (sum, mean, median, count, lit pixels/area/fraction, valid area, mean valid
  nights). Printed apart, not in the totals: reading each area's own object
  instead (16 at a time) and stacking them, the path when the set's object is
  missing. ``EARTHKEEP_ZONAL_THREADS=2`` shares the areas among two threads
  (default 1).
  Once per kernel of ``zonal_metrics_many`` (``numba``, the compiled fused
  kernel, and ``numpy``, the fallback); the numba line also gives the first
  call's import + compile-or-load time (not in the totals). Printed apart: the
  cold path (nothing cached: exactextract per area, written to the store) and
  the memory-cache path (a worker that already used them);
* **exactextract** (plain, no cache): one ``exact_extract`` call per month for
  all areas, ops ``sum, mean, median, count``;
* **rasterstats**: ``zonal_stats`` per month for all areas, stats ``sum, mean,
  median, count`` (cell-centre rasterisation, not coverage-exact).

``--step 0.1`` rounds the radiance to multiples of 0.1 like VNP46A2's stored
values (many equal values per area); the default is continuous values.

The months' cells/s are set against this machine's memory bandwidth, measured as
a numpy copy of a large array (bytes read + written per second) divided by the
bytes each cell touches once (cell index, coverage and covered area: 8 bytes
each; the value and the nights: their item sizes).

Then tiles/s for one zoom level of a composite: cold (render with rio-tiler +
store) and cached (read back from the store), through ``earthkeep.nightlights.tiles``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import Polygon, mapping
from shapely.geometry.base import BaseGeometry

from earthkeep.raster.grid import BLACK_MARBLE_RES, Grid
from earthkeep.raster.zonal import StackedWeights, coverage_weights, stack_weights, zonal_metrics_many

OPS = ["sum", "mean", "median", "count"]


def make_areas(grid: Grid, n: int, radius: tuple[float, float] = (10, 60), seed: int = 0) -> list[Polygon]:
    """Irregular polygons (2 x ``radius`` cells across) spread over the grid."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        r = rng.uniform(*radius) * grid.res
        cx = rng.uniform(grid.west + 2 * r, grid.east - 2 * r)
        cy = rng.uniform(grid.south + 2 * r, grid.north - 2 * r)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 24))
        radii = r * rng.uniform(0.6, 1.0, 24)
        out.append(Polygon(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles), strict=True)).buffer(0))
    return out


def month_raster(base: np.ndarray, month: int, out: np.ndarray, step: float = 0.0) -> np.ndarray:
    np.multiply(base, np.float32(1.0 + 0.01 * month), out=out)
    if step:
        np.multiply(np.round(out / np.float32(step)), np.float32(step), out=out)
    return out


def open_services(tmp: Path) -> Any:
    """Services on a SQLite catalog and a local store in ``tmp`` (what the worker uses, embedded)."""
    from earthkeep.runtime import Services
    from earthkeep.settings import load_settings
    from earthkeep.store.obstore import ObstoreStore

    settings = load_settings(catalog={"database_url": f"sqlite:///{tmp}/c.db"})
    return Services.open(settings, store=ObstoreStore.local(tmp / "store"))


def record_areas(svc: Any, polygons: list[Polygon]) -> list[Any]:
    """The polygons as catalog areas (validated like an upload), read back as a worker reads them."""
    from sqlalchemy import select

    from earthkeep.nightlights import areas as area_ops
    from earthkeep.nightlights.geometry import parse_area
    from earthkeep.nightlights.tables import Area

    with svc.sessions.begin() as s:
        for i, p in enumerate(polygons):
            area_ops.create_area(s, parse_area(dict(mapping(p))), name=f"bench-{i}")
    with svc.sessions() as s:
        return list(s.scalars(select(Area).order_by(Area.id)))


def load_weights(svc: Any, areas: list[Any], grid: Grid) -> StackedWeights:
    """The product's cached weights of the areas, stacked (memory, else the set's one stored object,
    else each area's, else exactextract + store)."""
    from earthkeep.nightlights.processing import stacked_area_weights

    return asyncio.run(stacked_area_weights(svc, areas, grid))


def load_each(svc: Any, areas: list[Any], grid: Grid) -> StackedWeights:
    """Each area's stored weights (16 reads at a time), stacked: what a worker does when the set's object
    is missing."""
    from earthkeep.nightlights.processing import each_area_weights

    return stack_weights(asyncio.run(each_area_weights(svc, areas, grid)))


class Clock:
    """Wall time and this process's CPU time of the ``with`` blocks, added up (on a shared machine the
    CPU time is the steadier of the two)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._t, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._t
        self.cpu += time.process_time() - self._c

    def __str__(self) -> str:
        return f"{self.wall:.3f} s (cpu {self.cpu:.3f} s)"


def bench_earthkeep(
    svc: Any,
    grid: Grid,
    areas: list[Any],
    base: np.ndarray,
    nights: np.ndarray,
    months: int,
    step: float,
    kernel: str,
) -> tuple[Clock, Clock]:
    """Weights read from the store (a fresh worker), stacked, then the months: what is compared (the
    total, and the months alone)."""
    from_store, in_memory, each, metrics = Clock(), Clock(), Clock(), Clock()
    from earthkeep.nightlights.processing import weight_cache

    def forget() -> None:  # a fresh worker: the weights are in the store only
        weight_cache(svc).drop(lambda _: True)

    forget()
    with each:
        load_each(svc, areas, grid)
    forget()
    with from_store:
        stacked = load_weights(svc, areas, grid)
    with in_memory:
        load_weights(svc, areas, grid)
    buf = np.empty_like(base)
    for m in range(months):
        values = month_raster(base, m, buf, step)  # making the month's raster is not timed (same for all)
        with metrics:
            zonal_metrics_many(values, stacked, threshold=0.5, nights=nights, kernel=kernel)  # all areas at once
    print(
        f"  earthkeep ({kernel}): weights from the store {from_store} (the set's object), from memory {in_memory}"
        f" [each area's object, 16 at a time, stacked: {each}]; {months} months {metrics}"
        f" ({metrics.wall / months * 1e3:.1f} ms a month)"
    )
    total = Clock()
    total.wall = from_store.wall + metrics.wall
    total.cpu = from_store.cpu + metrics.cpu
    return total, metrics


def first_call(weights: StackedWeights, base: np.ndarray, nights: np.ndarray) -> float:
    """Seconds of the first numba call in this process: importing numba and the kernel, and compiling it
    (or loading it from numba's cache) for float32 values and nights and the weights as read from the
    store (read-only arrays: numba compiles them apart), all areas (the kernel with threads)."""
    t = time.perf_counter()
    zonal_metrics_many(base, weights, threshold=0.5, nights=nights, kernel="numba")
    return time.perf_counter() - t


def memory_bandwidth(nbytes: int = 1 << 29, repeat: int = 5) -> float:
    """Bytes/s of a numpy copy of a large array (bytes read + written; best of ``repeat``)."""
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    best = min(_timed(np.copyto, b, a) for _ in range(repeat))
    return 2 * a.nbytes / best


def _timed(f: Any, *args: Any) -> float:
    t = time.perf_counter()
    f(*args)
    return time.perf_counter() - t


def bench_exactextract(grid: Grid, areas: list[BaseGeometry], base: np.ndarray, months: int, step: float) -> Clock:
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    feats = [{"type": "Feature", "properties": {"fid": i}, "geometry": mapping(a)} for i, a in enumerate(areas)]
    buf = np.empty_like(base)
    clock = Clock()
    for m in range(months):
        values = month_raster(base, m, buf, step)
        with clock:
            exact_extract(NumPyRasterSource(values, *grid.bounds, nodata=np.nan), feats, OPS, output="geojson")
    return clock


def bench_rasterstats(grid: Grid, areas: list[BaseGeometry], base: np.ndarray, months: int, step: float) -> Clock:
    from rasterstats import zonal_stats

    buf = np.empty_like(base)
    clock = Clock()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in range(months):
            values = month_raster(base, m, buf, step)
            with clock:
                zonal_stats(areas, values, affine=grid.transform, nodata=np.nan, stats=OPS)
    return clock


def bench_tiles(zoom: int) -> tuple[int, float, float]:
    """Tiles of one zoom level over a 2° x 2° composite: (count, cold tiles/s, cached tiles/s)."""
    from earthkeep.nightlights import areas as area_ops
    from earthkeep.nightlights.geometry import parse_area
    from earthkeep.nightlights.results import upsert_result
    from earthkeep.nightlights.settings import NightlightsSettings
    from earthkeep.nightlights.tiles import get_tile
    from earthkeep.raster.cog import write_cog
    from earthkeep.raster.grid import snap
    from earthkeep.raster.tiles import TMS
    from earthkeep.runtime import Services
    from earthkeep.settings import load_settings
    from earthkeep.store.obstore import ObstoreStore

    tmp = Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    svc = Services.open(
        load_settings(catalog={"database_url": f"sqlite:///{tmp}/c.db"}), store=ObstoreStore.local(tmp / "store")
    )
    svc.use_settings(NightlightsSettings(tile_max_zoom=14))
    ring = [[36.0, -2.0], [38.0, -2.0], [38.0, 0.0], [36.0, 0.0], [36.0, -2.0]]
    with svc.sessions.begin() as s:
        area = area_ops.create_area(s, parse_area({"type": "Polygon", "coordinates": [ring]}), name="bench")
        area_id = area.id
    grid = snap((36.0, -2.0, 38.0, 0.0))
    data = np.random.default_rng(0).gamma(0.5, 8.0, grid.shape).astype(np.float32)
    cog = write_cog(tmp / "c.tif", [data], grid)
    asyncio.run(svc.store.put_file("nightlights/composites/1/2023-01.tif", cog))
    with svc.sessions.begin() as s:
        upsert_result(
            s,
            area_id=area_id,
            month="2023-01",
            source="bench",
            metrics={
                "pixels": 0,
                "lit_pixels": 0,
                "lit_area_km2": 0,
                "valid_area_km2": 0,
                "area_km2": 0,
                "valid_fraction": 0,
            },
            threshold=0.5,
            composite_key="nightlights/composites/1/2023-01.tif",
            job_id=None,
        )
    tiles = list(TMS.tiles(36.0, -2.0, 38.0, 0.0, [zoom]))

    async def run() -> tuple[float, float]:
        t = time.perf_counter()
        for tile in tiles:
            await get_tile(svc, area_id, "2023-01", zoom, tile.x, tile.y)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        for tile in tiles:
            _, cached = await get_tile(svc, area_id, "2023-01", zoom, tile.x, tile.y)
            assert cached
        return cold, time.perf_counter() - t

    cold, warm = asyncio.run(run())
    svc.close()
    return len(tiles), len(tiles) / cold, len(tiles) / warm


def best(clocks: list[Clock]) -> tuple[float, float]:
    return min(c.wall for c in clocks), min(c.cpu for c in clocks)


def report(
    runs: dict[str, list[Clock]], months: dict[str, list[Clock]], a: Any, cells: int, base: np.ndarray, nights: Any
) -> None:
    """Best wall and CPU time of each, ratios of every peer to every earthkeep kernel, and the months'
    cells/s against the memory bandwidth."""
    kernels = list(months)
    print(
        f" ({'best of ' + str(a.repeat) if a.repeat > 1 else 'one run'}; wall s, cpu s; peer / earthkeep by wall, cpu)"
    )
    for name, clocks in runs.items():
        if not clocks:
            continue
        wall, cpu = best(clocks)
        ratios = "  ".join(
            f"{wall / best(runs[k])[0]:5.1f}x / {cpu / best(runs[k])[1]:5.1f}x vs {k}" for k in kernels if k != name
        )
        note = " (goal >= 30x)" if name == "rasterstats" else ""
        print(f"  {name:16s} {wall:7.3f} {cpu:7.3f}   {ratios}{note}")
    print(" the months alone (zonal_metrics_many; weights in memory, stacked):")
    rs = best(runs["rasterstats"]) if runs["rasterstats"] else None
    for k in kernels:
        wall, cpu = best(months[k])
        vs = f", rasterstats {rs[0] / wall:.1f}x / {rs[1] / cpu:.1f}x of it" if rs else ""
        print(f"  {k:16s} {wall:7.3f} {cpu:7.3f}   {wall / a.months * 1e3:.2f} ms a month{vs}")
    bw = memory_bandwidth()
    per_cell = 3 * 8 + base.itemsize + nights.itemsize
    limit = bw / per_cell
    print(
        f" memory: numpy copy {bw / 1e9:.1f} GB/s (read + write); {per_cell} bytes a cell"
        f" -> {limit / 1e6:,.0f} M cells/s"
    )
    for k in kernels:
        rate = cells * a.months / best(months[k])[1]
        print(f"  {k:16s} {rate / 1e6:7.1f} M cells/s (cpu), {rate / limit:.1%} of the bandwidth limit")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--areas", type=int, default=100)
    p.add_argument("--months", type=int, default=12)
    p.add_argument("--size", type=int, default=5000)
    p.add_argument("--zoom", type=int, default=10)
    p.add_argument("--radius", type=float, nargs=2, default=(10, 60), help="area radius range in cells")
    p.add_argument("--step", type=float, default=0.0, help="round the radiance to multiples of this (e.g. 0.1)")
    p.add_argument("--repeat", type=int, default=1, help="run the comparison this many times, report the best")
    p.add_argument("--skip-tiles", action="store_true")
    p.add_argument("--skip-rasterstats", action="store_true")
    p.add_argument("--kernels", nargs="+", default=["numba", "numpy"], choices=["numba", "numpy"])
    a = p.parse_args()
    from earthkeep.logs import configure_logging

    configure_logging("WARNING")  # no log line per stored object
    grid = Grid(west=20.0, north=10.0, res=BLACK_MARBLE_RES, width=a.size, height=a.size)
    base = np.random.default_rng(1).gamma(0.5, 8.0, grid.shape).astype(np.float32)
    base[np.random.default_rng(2).random(grid.shape) < 0.05] = np.nan
    nights = np.random.default_rng(3).integers(0, 31, grid.shape).astype(np.float32)
    nights[np.isnan(base)] = np.nan
    svc = open_services(Path(tempfile.mkdtemp(prefix="bench-zonal-")))
    areas = record_areas(svc, make_areas(grid, a.areas, tuple(a.radius)))
    geoms = [area.geom for area in areas]
    cells = sum(w.cells.size for w in coverage_weights(geoms, grid))
    print(
        f"{a.areas} areas ({cells / a.areas:,.0f} cells each on average) x {a.months} months "
        f"on a {a.size} x {a.size} raster" + (f", values in steps of {a.step}" if a.step else "")
    )
    cold = Clock()
    with cold:  # nothing cached yet: exactextract per area, written to the store
        load_weights(svc, areas, grid)
    print(f"  earthkeep weights, cold (exactextract per area + store writes, stacked, the set stored): {cold}")
    if "numba" in a.kernels:
        t = first_call(StackedWeights.from_bytes(load_weights(svc, areas, grid).to_bytes()), base, nights)
        print(f"  numba kernel, first call (import + compile or load from cache): {t:.2f} s")
    kernels = [f"earthkeep/{k}" for k in a.kernels]
    runs: dict[str, list[Clock]] = {name: [] for name in [*kernels, "exactextract", "rasterstats"]}
    months: dict[str, list[Clock]] = {name: [] for name in kernels}
    for r in range(a.repeat):
        if a.repeat > 1:
            print(f" run {r + 1} of {a.repeat}")
        for k, name in zip(a.kernels, kernels, strict=True):
            total, metrics = bench_earthkeep(svc, grid, areas, base, nights, a.months, a.step, k)
            runs[name].append(total)
            months[name].append(metrics)
        runs["exactextract"].append(bench_exactextract(grid, geoms, base, a.months, a.step))
        if not a.skip_rasterstats:
            runs["rasterstats"].append(bench_rasterstats(grid, geoms, base, a.months, a.step))
    svc.close()
    report(runs, months, a, cells, base, nights)
    if a.skip_tiles:
        return
    n, cold, warm = bench_tiles(a.zoom)
    print(
        f"tiles at zoom {a.zoom} ({n} tiles, 2x2 degrees): cold {cold:.1f} tiles/s (render + store), "
        f"cached {warm:.1f} tiles/s ({warm / cold:.1f}x)"
    )


if __name__ == "__main__":
    main()
