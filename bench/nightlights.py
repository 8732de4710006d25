"""A month of Black Marble night lights for a country, end to end: earthkeep vs blackmarblepy, in one run.

    .venv/bin/python bench/nightlights.py [--month 2023-03] [--tile-size 1200] [--grid 3x3]
        [--rtt-ms 40] [--mbit 200] [--archive DIR] [--bm-python .bm-venv/bin/python]

The LAADS emulator (``earthkeep.testbed.laads``, its own process) holds every
night of ``--month`` for the four VNP46A2 tiles over a Kenya-sized country
(h21v08, h22v08, h21v09, h22v09; collection 5200, ``VIIRS_Grid_DNB_2d``, tiles of
``--tile-size`` cells a side, 2400 in NASA's product), written before timing
starts (``--archive`` keeps them for the next run). Both contenders go through
the same network shaper (:func:`earthkeep.testbed.shaper.shaper_process`: every
connection ``--mbit`` Mbit/s and ``--rtt-ms`` round trip) and compute, for the
country cut into ``--grid`` regions, the month's composite and per-region
sum and mean:

* earthkeep: the product's job path. One request per region
  (``nightlights.requests.submit``), run by one worker with the product's default
  concurrency (4 jobs) until all are done: ``laads_download`` (day listings, the
  tiles through the transfer engine, shared between regions, catalogued), then
  ``etl_processing`` (masked nights -> median composite on the 15" grid, stored
  as a COG, coverage-weighted metrics upserted). Quality flags 0 and 1 kept,
  cloudy cells masked (the product's defaults).
* blackmarblepy (``bm_raster``; in its own virtualenv, as its pins conflict
  with ours: pandas < 3): its downloader's ``URL`` class constant is pointed
  at the shaped emulator (the only patch; blackmarblepy is the peer), then
  ``bm_raster(country, "VNP46A2", every day, drop_values_by_quality_flag=[2,
  255])`` -> the daily stack clipped to the country; the composite is the
  median over time (earthkeep's method; the mean is reported too) and
  ``exactextract`` gives each region's sum and mean. ``bm_extract`` is also
  called, as a user would, and its outcome reported.

Wall times run from the first request to the last metric (imports and
emulator start-up excluded for both; so is numba's compile of the metrics kernel, which
``make install`` does once: :func:`earthkeep.raster.zonal.warm_up`, its time printed).
After each earthkeep run, the jobs' phases from the queue: per kind, from the first
start to the last finish, and the summed job time. Printed: both times, the ratio, and the
per-region metrics side by side with their relative differences; then, not timed,
earthkeep without the cloud mask against blackmarblepy as it runs and like with
like (its country buffered by 1.5 cells so that its clip by cell centre drops no
cell a region touches, its stack snapped to the tile lattice: see
``bench/nightlights_steps.py`` for why).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKEN = "bench-earthdata-token"
TILES = ((21, 8), (22, 8), (21, 9), (22, 9))
COUNTRY = [(33.9, -1.0), (34.0, 0.3), (34.9, 1.9), (34.5, 3.9), (35.9, 4.6), (36.9, 4.4), (38.1, 3.6),
           (39.5, 3.5), (40.8, 4.0), (41.9, 3.9), (41.0, 2.8), (41.0, -0.9), (41.6, -1.7), (40.2, -2.8),
           (39.2, -4.7), (37.7, -3.1), (33.9, -1.0)]  # a simplified Kenya
CITIES = ((36.82, -1.29, 80.0, 0.08), (39.67, -4.05, 40.0, 0.06), (34.76, -0.09, 30.0, 0.05),
          (36.07, -0.30, 25.0, 0.05), (35.27, 0.51, 20.0, 0.05), (39.65, -0.45, 8.0, 0.03),
          (35.60, 3.12, 5.0, 0.03), (37.99, 2.33, 4.0, 0.03))  # lon, lat, peak nW, sigma deg


def regions(grid: str) -> list[tuple[str, dict]]:
    """The country cut into ``cols x rows`` regions (GeoJSON geometries), named r<row><col>."""
    from shapely.geometry import Polygon, box, mapping

    cols, rows = (int(x) for x in grid.split("x"))
    country = Polygon(COUNTRY)
    w, s, e, n = country.bounds
    out = []
    for r in range(rows):
        for c in range(cols):
            cell = box(w + (e - w) * c / cols, n - (n - s) * (r + 1) / rows,
                       w + (e - w) * (c + 1) / cols, n - (n - s) * r / rows)
            part = country.intersection(cell)
            if part.geom_type == "Polygon" and part.area > 0.05:
                out.append((f"r{r}{c}", mapping(part)))
    return out


def days_of(month: str) -> list[date]:
    from earthkeep.testbed.laads import month_days

    return month_days(month)


# --- the emulator (child process, earthkeep's venv) -------------------------------------------------

def archive(root: Path, tile_size: int):  # type: ignore[no-untyped-def]
    from earthkeep.testbed.laads import GROUP_C2, City, LaadsArchive, Scene

    scene = Scene(cities=tuple(City(*c) for c in CITIES))
    return LaadsArchive(root, token=TOKEN, scene=scene, tiles=TILES, decoy_tiles=(), tile_size=tile_size,
                        grid_group=GROUP_C2)


def serve(root: Path, tile_size: int, month: str, url_file: Path) -> None:
    from earthkeep.testbed.runner import serve_app

    laads = archive(root, tile_size)
    for day in days_of(month):
        laads.materialise(day)
    with serve_app(laads.app()) as base:
        url_file.write_text(base)
        while True:
            time.sleep(3600)


# --- earthkeep ---------------------------------------------------------------------------------------

async def run_earthkeep(base: str, work: Path, month: str, areas: list[tuple[str, dict]], *,
                        mask_cloudy: bool = True) -> tuple[float, dict]:
    import asyncio

    from earthkeep.jobs.worker import Worker
    from earthkeep.nightlights import areas as area_store
    from earthkeep.nightlights import requests
    from earthkeep.nightlights.geometry import parse_area
    from earthkeep.nightlights.results import timeseries
    from earthkeep.nightlights.settings import NightlightsSettings
    from earthkeep.runtime import Services
    from earthkeep.settings import load_settings
    from earthkeep.store.obstore import ObstoreStore

    settings = load_settings(catalog={"database_url": f"sqlite:///{work}/catalog.db"},
                             transfer={"work_dir": str(work / "partial"), "allow_private": True})
    svc = Services.open(settings, store=ObstoreStore.local(work / "store"))
    svc.use_settings(NightlightsSettings(earthdata_token=TOKEN, laads_url=base, mask_cloudy=mask_cloudy))
    ids = {}
    with svc.sessions.begin() as s:
        for name, geom in areas:
            ids[name] = area_store.create_area(s, parse_area(geom), name=name).id
    worker = Worker(svc.queue, svc.registry, svc, concurrency=settings.worker.concurrency, poll_s=0.05,
                    lease_s=120.0)
    stop = asyncio.Event()
    started = time.perf_counter()
    request_ids = [requests.submit(svc, i, month, month).id for i in ids.values()]
    task = asyncio.create_task(worker.run(stop))
    try:
        while True:
            statuses = [requests.request_status(svc, r) for r in request_ids]
            if all(st["status"] in ("completed", "failed", "cancelled") for st in statuses):
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        await task
    _phases(svc)
    bad = [st for st in statuses if st["status"] != "completed"]
    if bad:
        raise SystemExit(f"earthkeep: {len(bad)} request(s) failed: {bad[0]}")
    out = {}
    with svc.sessions() as s:
        for name, i in ids.items():
            [row] = timeseries(s, i)
            out[name] = {"sum": row["sum_radiance"], "mean": row["mean_radiance"], "median": row["median_radiance"]}
    svc.close()
    return elapsed, out


def _phases(svc) -> None:  # type: ignore[no-untyped-def]
    """Per job kind: how many, from the first start to the last finish, and the summed run time."""
    from sqlalchemy import select

    from earthkeep.catalog.tables import Job

    with svc.sessions() as s:
        jobs = s.scalars(select(Job).where(Job.started_at.is_not(None), Job.finished_at.is_not(None))).all()
    for kind in sorted({j.kind for j in jobs}):
        mine = [j for j in jobs if j.kind == kind]
        span = max(j.finished_at for j in mine) - min(j.started_at for j in mine)
        busy = sum(((j.finished_at - j.started_at).total_seconds() for j in mine), 0.0)
        print(f"  {kind:>16}: {len(mine)} jobs, {span.total_seconds():6.2f} s from first start to last finish, "
              f"{busy:6.2f} s of job time", flush=True)


# --- blackmarblepy (child process, its own venv) ---------------------------------------------------------

def peer(spec_file: Path) -> None:
    """Run blackmarblepy as a user would, against ``spec["base"]``; write the results next to the spec."""
    spec = json.loads(spec_file.read_text())
    import blackmarble
    import geopandas as gpd
    import numpy as np
    from blackmarble import bm_extract, bm_raster
    from blackmarble.download import BlackMarbleDownloader
    from shapely.geometry import shape

    BlackMarbleDownloader.URL = spec["base"]  # the peer's only patch: LAADS is the shaped emulator
    days = [date.fromisoformat(d) for d in spec["days"]]
    names = [n for n, _ in spec["areas"]]
    areas = gpd.GeoDataFrame({"name": names}, geometry=[shape(g) for _, g in spec["areas"]], crs="EPSG:4326")
    country = gpd.GeoDataFrame({"name": ["country"]}, geometry=[areas.union_all()], crs="EPSG:4326")
    out_dir = Path(spec["work"]) / "bm"
    started = time.perf_counter()
    daily = bm_raster(country, "VNP46A2", days, spec["token"], drop_values_by_quality_flag=[2, 255],
                      output_directory=out_dir)
    raster_s = time.perf_counter() - started
    stack = daily["DNB_BRDF-Corrected_NTL"]
    results = {"raster_s": raster_s, "nights": int(stack.sizes["time"]), "version": blackmarble.__version__}
    for how in ("median", "mean"):
        comp = stack.median("time", skipna=True) if how == "median" else stack.mean("time", skipna=True)
        comp = comp.rio.write_crs("EPSG:4326").rio.write_nodata(np.nan)
        results[how] = _zonal(comp, areas)
        if how == "median":
            results["seconds"] = time.perf_counter() - started
    results["like"] = _like_with_like(country, days, spec, out_dir, areas)
    try:  # the one-call API, as its README shows (files already downloaded: skip_if_exists)
        t0 = time.perf_counter()
        bm_extract(areas, "VNP46A2", days, spec["token"], aggfunc=["sum", "mean"], output_directory=out_dir)
        results["bm_extract"] = f"ok in {time.perf_counter() - t0:.1f} s"
    except Exception as exc:  # reported, not hidden
        results["bm_extract"] = f"{type(exc).__name__}: {exc}"[:200]
    spec_file.with_suffix(".out.json").write_text(json.dumps(results))


def _like_with_like(country, days, spec, out_dir, areas):  # type: ignore[no-untyped-def]
    """blackmarblepy's stack with its two departures from the tile lattice undone (not timed): the country
    buffered by 1.5 cells before ``bm_raster`` (its clip keeps cells by centre, which drops cells partly in
    the country) and the stack's coordinates snapped to the lattice (it places tiles by its tile GeoJSON,
    whose corners are 2**-13 ° off: 30.0001220703125 °E, 10.0001220703125 °N)."""
    import warnings

    import geopandas as gpd
    import numpy as np
    from blackmarble import bm_raster

    res = 10.0 / spec["tile_size"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # buffering in degrees
        wider = gpd.GeoDataFrame(geometry=country.buffer(1.5 * res), crs="EPSG:4326")
    daily = bm_raster(wider, "VNP46A2", days, spec["token"], drop_values_by_quality_flag=[2, 255],
                      output_directory=out_dir)
    stack = daily["DNB_BRDF-Corrected_NTL"]
    comp = stack.median("time", skipna=True)
    comp = comp.assign_coords(x=(np.floor((comp.x.values + 180) / res) + 0.5) * res - 180,
                              y=90 - (np.floor((90 - comp.y.values) / res) + 0.5) * res)
    return _zonal(comp.rio.write_crs("EPSG:4326").rio.write_nodata(np.nan), areas)


def _zonal(comp, areas):  # type: ignore[no-untyped-def]
    from exactextract import exact_extract

    stats = exact_extract(comp, areas, ["sum", "mean"], include_cols=["name"], output="pandas")
    return {r["name"]: {"sum": float(r["sum"]), "mean": float(r["mean"])} for _, r in stats.iterrows()}


def run_peer(python: str, base: str, work: Path, month: str, areas: list[tuple[str, dict]], tile_size: int) -> dict:
    spec = work / "bm-spec.json"
    work.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps({"base": base, "token": TOKEN, "work": str(work), "areas": areas,
                                "days": [d.isoformat() for d in days_of(month)], "tile_size": tile_size}))
    env = {**os.environ, "TQDM_DISABLE": "1"}
    subprocess.run([python, str(Path(__file__).resolve()), "--peer", str(spec)], check=True,
                   stdout=subprocess.DEVNULL, env=env)
    return json.loads(spec.with_suffix(".out.json").read_text())


# --- the run ---------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--month", default="2023-03")
    ap.add_argument("--tile-size", type=int, default=1200)
    ap.add_argument("--grid", default="3x3", help="regions: columns x rows over the country")
    ap.add_argument("--rtt-ms", type=float, default=40.0)
    ap.add_argument("--mbit", type=float, default=200.0)
    ap.add_argument("--archive", type=Path, default=None, help="keep the emulator's files here (reused)")
    ap.add_argument("--bm-python", default=str(HERE.parent / ".bm-venv" / "bin" / "python"),
                    help="the Python of the virtualenv holding blackmarblepy")
    args = ap.parse_args()
    import asyncio
    import logging

    import structlog

    from earthkeep.testbed.shaper import Shaping, shaper_process

    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    areas = regions(args.grid)
    shaping = Shaping(rtt_ms=args.rtt_ms, mbit_per_conn=args.mbit)
    with tempfile.TemporaryDirectory(prefix="bench-nightlights-") as d:
        tmp = Path(d)
        root = args.archive or tmp / "laads"
        url_file = tmp / "url"
        t0 = time.perf_counter()
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(root), str(args.tile_size), args.month,
                                  str(url_file)])
        try:
            while not url_file.exists():
                if child.poll() is not None:
                    sys.exit("the emulator process stopped")
                time.sleep(0.2)
            print(f"{len(days_of(args.month)) * len(TILES)} tiles of {args.tile_size}^2 ready in "
                  f"{time.perf_counter() - t0:.0f} s; {len(areas)} regions; {shaping.describe()}", flush=True)
            from earthkeep.raster.zonal import warm_up

            t1 = time.perf_counter()
            warm_up()  # what `make install` does; numba keeps the compiled kernel on disk
            print(f"zonal kernel ready in {time.perf_counter() - t1:.1f} s (numba compiles it on the first run "
                  "after an install, `make install` does that; not timed)", flush=True)
            with shaper_process(url_file.read_text(), shaping) as base:
                ours, ek = asyncio.run(run_earthkeep(base, tmp / "ek", args.month, areas))
                print(f"earthkeep      {ours:6.2f} s", flush=True)
                unmasked_s, unmasked = asyncio.run(run_earthkeep(base, tmp / "ek-nocloud", args.month, areas,
                                                                 mask_cloudy=False))
                print(f"earthkeep      {unmasked_s:6.2f} s with NIGHTLIGHTS_MASK_CLOUDY=false", flush=True)
                bm = run_peer(args.bm_python, base, tmp / "peer", args.month, areas, args.tile_size)
                print(f"blackmarblepy  {bm['seconds']:6.2f} s (bm_raster {bm['raster_s']:.2f} s)", flush=True)
        finally:
            child.terminate()
            child.wait(10)
    report(ours, ek, bm, unmasked)


def report(ours: float, ek: dict, bm: dict, unmasked: dict) -> None:
    print(f"\nblackmarblepy {bm['version']}: {bm['nights']} nights in the stack; bm_extract: {bm['bm_extract']}")
    print(f"wall time: earthkeep {ours:.2f} s, blackmarblepy {bm['seconds']:.2f} s -> "
          f"{bm['seconds'] / ours:.2f}x faster (goal >= 3x)\n")
    print("| region | earthkeep sum | bm (median) sum | diff | earthkeep mean | bm (median) mean | diff "
          "| bm (mean over nights) mean | diff |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    worst = {"sum": 0.0, "mean": 0.0, "mean-composite": 0.0}
    for name, ours_m in ek.items():
        med, avg = bm["median"][name], bm["mean"][name]
        ds = _rel(med["sum"], ours_m["sum"])
        dm = _rel(med["mean"], ours_m["mean"])
        da = _rel(avg["mean"], ours_m["mean"])
        worst = {"sum": max(worst["sum"], abs(ds)), "mean": max(worst["mean"], abs(dm)),
                 "mean-composite": max(worst["mean-composite"], abs(da))}
        print(f"| {name} | {ours_m['sum']:.1f} | {med['sum']:.1f} | {ds:+.3%} | {ours_m['mean']:.4f} | "
              f"{med['mean']:.4f} | {dm:+.3%} | {avg['mean']:.4f} | {da:+.1%} |")
    print(f"\nlargest differences: sum {worst['sum']:.3%}, mean {worst['mean']:.3%} (median composites); "
          f"{worst['mean-composite']:.1%} against blackmarblepy's mean over nights")
    same = max(max(abs(_rel(bm["median"][n]["sum"], m["sum"])), abs(_rel(bm["median"][n]["mean"], m["mean"])))
               for n, m in unmasked.items())
    print(f"earthkeep without the cloud mask (blackmarblepy has none) vs blackmarblepy, median composites: "
          f"largest relative difference {same:.2e} over {len(unmasked)} regions (sum and mean)")
    like = max(max(abs(_rel(bm["like"][n]["sum"], m["sum"])), abs(_rel(bm["like"][n]["mean"], m["mean"])))
               for n, m in unmasked.items())
    print(f"the same, like with like (blackmarblepy's country buffered by 1.5 cells and its stack snapped to "
          f"the tile lattice, not timed): largest relative difference {like:.2e}")


def _rel(theirs: float, ours: float) -> float:
    return (theirs - ours) / ours if ours else float("nan")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], Path(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer(Path(sys.argv[2]))
    else:
        main()
