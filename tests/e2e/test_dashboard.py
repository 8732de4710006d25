"""The dashboard in headless Chromium against a real ``earthkeep serve`` filled from the testbed emulators.

Playwright drives the system Chromium (``/usr/bin/chromium``, from ``.ci/install-servers.sh``); no browser is
downloaded. Every page must load with no console error and no request beyond 127.0.0.1, and show what the
JSON API says. Screenshots go to the test's tmp dir; with ``EARTHKEEP_SCREENSHOTS=<dir>`` the overview and
nightlights ones are also copied there (that is how ``docs/img/dashboard-*.png`` are made).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import sync_playwright

from earthkeep.demo import Demo, emulators, fill, prepare, service, wait_for_work
from earthkeep.testbed.faults import Fault, FaultInjector
from earthkeep.testbed.fileserver import create_file_app
from earthkeep.testbed.runner import serve_app
from earthkeep.testbed.servers import free_port

CHROMIUM = "/usr/bin/chromium"
PAGES = ("overview", "jobs", "catalog", "forcing", "stations", "granules", "rescue", "nightlights")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("dashboard") / "demo"
    with emulators(root) as emulated:
        d = Demo(root=root, port=free_port(), stations_seconds=3, timeout_s=300, say=lambda _: None)
        prepare(d, emulated)
        with service(d):
            fill(d)
            wait_for_work(d)
            yield d


@pytest.fixture(scope="module")
def api(demo: Demo) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo.api, timeout=30,
                      headers={"Authorization": f"Bearer {demo.keys['admin']}"}) as c:
        yield c


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run .ci/install-servers.sh as root (Debian chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Watched:
    """A page with its console errors and the hosts of every request it made."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", lambda r: self.urls.append(r.url))

    def open(self, name: str, query: str = "") -> Any:
        self.page.goto(f"{self.base}/#/{name}{query}")
        self.page.wait_for_selector(f"main[data-ready={name}]", timeout=20_000)
        return self.page

    def foreign(self) -> list[str]:
        return [u for u in self.urls if urlparse(u).scheme in ("http", "https", "ws", "wss")
                and urlparse(u).hostname != "127.0.0.1"]


@pytest.fixture
def watched(browser: Any, demo: Demo) -> Iterator[Watched]:
    w = Watched(browser, demo.api)
    yield w
    w.context.close()


def _eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """``check()`` until it stops raising AssertionError (the pages poll every 5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_every_page_loads_offline_without_console_errors(watched: Watched, tmp_path: Path) -> None:
    for name in PAGES:
        page = watched.open(name)
        page.wait_for_load_state("networkidle")
        assert not page.locator("#error").is_visible(), (name, page.locator("#error").inner_text())
        page.screenshot(path=str(tmp_path / f"dashboard-{name}.png"), full_page=True)
    for path, ready in (("/docs", ".swagger-ui .info .title"), ("/redoc", "[role=navigation], .menu-content")):
        watched.page.goto(f"{watched.base}{path}")
        watched.page.wait_for_selector(ready, timeout=20_000)
        assert "earthkeep" in watched.page.content()
    assert watched.errors == []
    assert watched.foreign() == []
    assert any("/ui/vendor/leaflet/leaflet.js" in u for u in watched.urls)
    wanted = os.environ.get("EARTHKEEP_SCREENSHOTS")
    if wanted:
        for name in ("overview", "nightlights"):
            shutil.copy(tmp_path / f"dashboard-{name}.png", Path(wanted) / f"dashboard-{name}.png")


def _all_jobs(api: httpx.Client) -> list[dict[str, Any]]:
    jobs, cursor = [], None
    while True:
        page = api.get("/jobs", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}).json()
        jobs += page["jobs"]
        cursor = page["next"]
        if not cursor:
            return jobs


def test_overview_shows_the_api_numbers(watched: Watched, api: httpx.Client) -> None:
    page = watched.open("overview")
    for coll in api.get("/stac/collections").json()["collections"]:
        n, cursor = 0, None
        while True:
            got = api.get("/items", params={"collection": coll["id"], "limit": 1000,
                                            **({"cursor": cursor} if cursor else {})}).json()
            n += len(got["items"])
            if not (cursor := got["next"]):
                break
        assert n > 0
        assert page.locator(f'#collections [data-collection="{coll["id"]}"]').inner_text() == str(n)

    def queue_matches() -> None:
        shown = {(c.get_attribute("data-kind"), c.get_attribute("data-state")): int(c.inner_text())
                 for c in page.locator("#queue [data-kind]").all()}
        counts = Counter((j["kind"], j["status"]) for j in _all_jobs(api))
        assert {k: v for k, v in shown.items() if v} == dict(counts)

    _eventually(queue_matches)
    assert page.locator('#health [data-check="catalog"] b').inner_text() == "ok"
    running = api.get("/status/services").json()
    assert set(running["roles_running"]) >= {"api", "scheduler", "worker", "granules"}
    _eventually(lambda: _same(sorted(b.get_attribute("data-role") for b in page.locator("#roles-running .badge").all()),
                              sorted(api.get("/status/services").json()["roles_running"])))
    assert page.locator("#services tbody tr").count() == len(api.get("/status/services").json()["services"])
    runs = api.get("/runs", params={"limit": 20}).json()
    assert page.locator("#runs tbody tr").count() == len(runs)
    errors = [r["error_message"] for r in runs if r["error_message"]]
    for text in errors:
        assert text in page.locator("#runs").inner_text()


def test_domain_pages_show_the_api_numbers(watched: Watched, api: httpx.Client) -> None:
    status = api.get("/status").json()
    page = watched.open("rescue")
    assert page.locator('#rescue-figures [data-figure="datasets"] b').inner_text() == str(status["datasets"]["total"])
    assert page.locator("#nodes tbody tr").count() == len(status["nodes"])
    page = watched.open("forcing")
    files = api.get("/forcing/datasets", params={"data_type": "wind", "limit": 5000}).json()
    assert page.locator('#forcing-latest [data-figure="files"] b').inner_text() == f"{len(files):,}"
    assert page.locator('#forcing-latest [data-figure="gaps"] b').inner_text() == str(
        len(api.get("/forcing/gaps").json()))
    wind = page.locator("#wind-map img.wind-overlay")
    wind.wait_for(state="attached")
    page.wait_for_function("() => { const i = document.querySelector('#wind-map img.wind-overlay');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    assert page.evaluate("document.querySelector('#wind-map img.wind-overlay').naturalWidth") == 720
    assert page.locator("#wind-time option").count() == len({f["valid_time_start"] for f in files})
    page = watched.open("granules")
    tasks = api.get("/tasks/status").json()["tasks"]
    assert page.locator('#task-counts [data-tasks="queued"] b').inner_text() == str(tasks["queued"])
    assert page.locator("#messages tbody tr").count() == min(50, len(api.get("/granules/messages").json()))
    slots = api.get("/granules/gatherer").json()["slots"]
    assert page.locator("#slots tbody tr").count() == len(slots) or not slots
    page = watched.open("catalog", "?collection=gfs-wind")
    assert page.locator("#items tbody tr").count() == len(
        api.get("/items", params={"collection": "gfs-wind", "limit": 100}).json()["items"])
    link = page.locator("#items a.asset").first
    with page.expect_download() as dl:
        link.click()
    assert Path(dl.value.path()).read_bytes()[:4] == b"GRIB"
    assert page.locator("#catalog-map path.leaflet-interactive").count() > 0  # footprints
    assert watched.errors == [] and watched.foreign() == []


def _same(shown: Any, expected: Any) -> None:
    assert shown == expected


def _chart_drawn(page: Any, selector: str) -> dict[str, int]:
    return page.evaluate("""(sel) => {
        const el = document.querySelector(sel);
        const canvas = el.querySelector("canvas");
        const ctx = canvas.getContext("2d");
        const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        let ink = 0;
        for (let i = 3; i < px.length; i += 4) if (px[i] > 0) ink++;
        return {points: el.chart.data[1].filter((v) => v !== null).length, ink};
    }""", selector)


def test_nightlights_map_draws_tiles_and_the_chart_the_series(watched: Watched, api: httpx.Client) -> None:
    page = watched.open("nightlights")
    page.wait_for_function("""() => [...document.querySelectorAll('#nl-map img.leaflet-tile')]
        .some((i) => i.src.includes('/tiles/') && i.complete && i.naturalWidth > 0)""", timeout=15_000)
    series = api.get("/areas/1/timeseries").json()["timeseries"]
    drawn = _chart_drawn(page, "#nl-chart")
    assert drawn["points"] == len(series) > 0 and drawn["ink"] > 0
    csv = api.get("/areas/1/timeseries", params={"format": "csv"})
    assert page.locator("#csv").get_attribute("href") == "/areas/1/timeseries?format=csv"
    with page.expect_download() as dl:
        page.locator("#csv").click()
    assert Path(dl.value.path()).read_text() == csv.text
    page = watched.open("stations")
    drawn = _chart_drawn(page, "#station-chart")
    assert drawn["points"] > 0 and drawn["ink"] > 0
    stations = api.get("/stations").json()["stations"]
    assert page.locator("#stations-map path.leaflet-interactive").count() == len(stations)
    assert watched.errors == [] and watched.foreign() == []


@pytest.fixture(scope="module")
def stalled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A loopback file server where /slow.bin hangs for a minute (a fetch of it stays running)."""
    d = tmp_path_factory.mktemp("files")
    (d / "slow.bin").write_bytes(b"x" * 1000)
    app = FaultInjector(create_file_app(d), [Fault(kind="delay", path="/slow.bin", times=None, delay_s=60)])
    with serve_app(app) as base:
        yield base


def _job(api: httpx.Client, url: str, status: str) -> dict[str, Any]:
    job = api.post("/jobs", json={"kind": "fetch", "payload": {"url": url, "collection": "downloads"}}).json()
    return _eventually(lambda: _in(api.get(f"/jobs/{job['id']}").json(), status), timeout=30)


def _in(job: dict[str, Any], status: str) -> dict[str, Any]:
    assert job["status"] == status, job
    return job


def test_retry_and_cancel_need_a_key(watched: Watched, api: httpx.Client, demo: Demo, stalled: str) -> None:
    failed = _job(api, f"{demo.api}/no-such-file.bin", "failed")
    running = _job(api, f"{stalled}/slow.bin", "running")
    page = watched.open("jobs", "?kind=fetch")
    assert failed["error"] in page.locator("#jobs").inner_text()  # the error text in full
    page.locator(f'button.retry[data-job="{failed["id"]}"]').click()
    page.wait_for_selector("#action-result .status-failed")
    assert "HTTP 401" in page.locator("#action-result").inner_text()
    assert page.locator("#error").is_visible()
    assert api.get(f"/jobs/{failed['id']}").json()["status"] == "failed"  # nothing changed
    assert all("401" in e for e in watched.errors)  # the browser logs the refused request, nothing else
    watched.errors.clear()

    page.fill("#key", demo.keys["admin"])
    page.click("#key-save")
    page.wait_for_selector("main[data-ready=jobs]")
    assert page.evaluate("sessionStorage.getItem('earthkeep.apiKey')") == demo.keys["admin"]
    assert page.evaluate("localStorage.length") == 0 and watched.context.cookies() == []
    page.locator(f'button.cancel[data-job="{running["id"]}"]').click()
    page.wait_for_selector("#action-result .status-ok")
    assert "now cancelled" in page.locator("#action-result").inner_text()
    assert api.get(f"/jobs/{running['id']}").json()["status"] == "cancelled"
    page.locator(f'button.retry[data-job="{failed["id"]}"]').click()
    _eventually(lambda: _assert_in("now pending", page.locator("#action-result").inner_text()))
    assert api.get(f"/jobs/{failed['id']}").json()["status"] in ("pending", "running", "failed")
    assert watched.errors == [] and watched.foreign() == []


def _assert_in(part: str, whole: str) -> None:
    assert part in whole, whole


@pytest.fixture(scope="module")
def private_api(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second api-only ``earthkeep serve`` on the same catalog with ``EARTHKEEP_PUBLIC_READ=false``."""
    port = free_port()
    env = {**os.environ, **demo.env, "EARTHKEEP_API_PORT": str(port), "EARTHKEEP_PUBLIC_READ": "false"}
    log = (tmp_path_factory.mktemp("private") / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "earthkeep.cli.main", "serve", "--role", "api"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _eventually(lambda: _up(base, proc), timeout=60)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _up(base: str, proc: subprocess.Popen[bytes]) -> None:
    assert proc.poll() is None, "earthkeep serve --role api exited"
    try:
        assert httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.TransportError as exc:
        raise AssertionError(str(exc)) from exc


def test_private_reads_use_the_key_for_data_and_tiles(browser: Any, private_api: str, demo: Demo) -> None:
    w = Watched(browser, private_api)
    try:
        page = w.open("overview")
        assert "HTTP 401" in page.locator("#error").inner_text()  # reads need a key here: said, not hidden
        page.fill("#key", demo.keys["admin"])
        page.click("#key-save")
        page.wait_for_selector("main[data-ready=overview]")
        assert not page.locator("#error").is_visible()
        assert page.locator("#collections [data-collection]").count() > 0
        page = w.open("nightlights")
        page.wait_for_function("""() => [...document.querySelectorAll('#nl-map img.leaflet-tile')]
            .some((i) => (i.dataset.src || '').includes('/tiles/') && i.complete && i.naturalWidth > 0)""",
                               timeout=15_000)
        assert w.foreign() == []
        assert all("401" in e for e in w.errors)  # only the refused reads before the key was typed
    finally:
        w.context.close()
