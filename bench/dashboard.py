"""Dashboard timings: first paint, time to a page's data, and the JSON each page pulls, in headless Chromium.

    .venv/bin/python bench/dashboard.py [--areas 100] [--runs 5]

Starts the testbed emulators and a demo-filled ``earthkeep serve`` (:mod:`earthkeep.demo`), adds areas up to
``--areas`` (the demo makes one; the rest are small squares spread over the globe, so the nightlights map has
that many outlines), then opens every page ``--runs`` times in Chromium (``/usr/bin/chromium`` via
Playwright), each time in a fresh browser context (cold cache) and once more in the same context (warm).
From the browser's own Performance API it reports, as medians:

- ``first paint`` and ``first contentful paint`` (``performance.getEntriesByType("paint")``);
- ``ready``: when the page has its data on screen (the ``earthkeep:ready:<page>`` mark set by ``app.js``);
- the bytes of JSON the page fetched (``fetch`` resource entries, decoded body) and the requests it made.

The goal from issue 15 is each page interactive in under 1 s on loopback; the peer is that goal.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

from earthkeep.demo import Demo, emulators, fill, prepare, service, wait_for_work
from earthkeep.testbed.servers import free_port

PAGES = ("overview", "jobs", "catalog", "forcing", "stations", "granules", "rescue", "nightlights")
MEASURE = """(name) => {
    const paint = Object.fromEntries(performance.getEntriesByType("paint").map((e) => [e.name, e.startTime]));
    const ready = performance.getEntriesByName(`earthkeep:ready:${name}`)[0];
    const res = performance.getEntriesByType("resource");
    const json = res.filter((r) => r.initiatorType === "fetch");
    return {fp: paint["first-paint"], fcp: paint["first-contentful-paint"], ready: ready && ready.startTime,
            json_bytes: json.reduce((n, r) => n + r.decodedBodySize, 0), json_requests: json.length,
            requests: res.length + 1, bytes: res.reduce((n, r) => n + r.transferSize, 0)};
}"""


def add_areas(demo: Demo, total: int) -> None:
    """Small squares (0.2 deg) on a grid over the globe until there are ``total`` areas."""
    auth = {"Authorization": f"Bearer {demo.keys['admin']}"}
    with httpx.Client(base_url=demo.api, headers=auth, timeout=30) as c:
        have = len(c.get("/areas").json()["features"])
        for i in range(total - have):
            lon, lat = -170 + (i % 17) * 20, -50 + (i // 17) * 17
            ring = [[lon, lat], [lon + 0.2, lat], [lon + 0.2, lat + 0.2], [lon, lat + 0.2], [lon, lat]]
            c.post("/areas", json={"type": "Feature", "properties": {"name": f"bench-{i}"},
                                   "geometry": {"type": "Polygon", "coordinates": [ring]}}).raise_for_status()


def measure(browser: Any, base: str, name: str) -> tuple[dict[str, float], dict[str, float]]:
    """One cold and one warm load of ``name``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    out = []
    for _ in range(2):
        page.goto(f"{base}/#/{name}")
        page.wait_for_selector(f"main[data-ready={name}]", timeout=30_000)
        page.wait_for_load_state("networkidle")
        out.append(page.evaluate(MEASURE, name))
        page.goto("about:blank")
    context.close()
    return out[0], out[1]


def report(rows: dict[str, list[tuple[dict[str, float], dict[str, float]]]], areas: int) -> None:
    med = statistics.median
    print("| page | first paint ms (cold) | ready ms cold | ready ms warm | JSON bytes | JSON requests | "
          "all bytes (cold) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, runs in rows.items():
        cold, warm = [r[0] for r in runs], [r[1] for r in runs]
        label = f"{name} ({areas} areas)" if name == "nightlights" else name
        print(f"| {label} | {med(r['fp'] for r in cold):.0f} | {med(r['ready'] for r in cold):.0f} | "
              f"{med(r['ready'] for r in warm):.0f} | {med(r['json_bytes'] for r in cold):,.0f} | "
              f"{med(r['json_requests'] for r in cold):.0f} | {med(r['bytes'] for r in cold):,.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--areas", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="earthkeep-bench-dashboard-") as tmp:
        root = Path(tmp) / "demo"
        with emulators(root) as emulated:
            demo = Demo(root=root, port=free_port(), stations_seconds=5, say=lambda _: None)
            prepare(demo, emulated)
            with service(demo):
                fill(demo)
                wait_for_work(demo)
                add_areas(demo, args.areas)
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
                    rows = {name: [measure(browser, demo.api, name) for _ in range(args.runs)] for name in PAGES}
                    browser.close()
    report(rows, args.areas)


if __name__ == "__main__":
    main()
