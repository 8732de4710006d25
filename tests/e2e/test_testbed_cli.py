"""`earthkeep testbed serve NAME` as a user runs it: a child process, its printed settings, real requests."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

CLI = [sys.executable, "-m", "earthkeep.cli.main"]


@contextmanager
def emulator(*args: str, tmp: Path) -> Iterator[dict[str, str]]:
    """Start `earthkeep testbed serve ARGS --port 0`, yield the settings it printed once it answers."""
    env_file = tmp / "env.sh"
    proc = subprocess.Popen([*CLI, "testbed", "serve", *args, "--port", "0", "--env-file", str(env_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the emulator printed no settings"
            time.sleep(0.05)
        env = parse_exports(env_file.read_text())
        header = proc.stdout.readline() if proc.stdout else ""
        url = header.split(" at ")[1].split()[0]
        while True:
            try:
                httpx.get(url + "/_faults", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "the emulator does not answer"
                time.sleep(0.05)
        yield {**env, "_URL": url}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def parse_exports(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            out[key] = shlex.split(value)[0] if value else ""
    return out


def test_gfs_serves_a_published_cycle_and_404s_one_not_yet_published(tmp_path):
    with emulator("gfs", tmp=tmp_path) as env:
        assert env["FORCING_GFS_MIRRORS"] == "aws" and env["FORCING_GFS_GRID"] == "1p00"
        assert env["EARTHKEEP_ALLOW_PRIVATE_URLS"] == "true"
        base = env["FORCING_GFS_AWS_URL"]
        day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y%m%d")
        idx = httpx.get(f"{base}/gfs.{day}/00/atmos/gfs.t00z.pgrb2.1p00.f003.idx", timeout=30)
        assert idx.status_code == 200 and ":UGRD:10 m above ground:3 hour fcst:" in idx.text
        future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y%m%d")
        assert httpx.get(f"{base}/gfs.{future}/00/atmos/gfs.t00z.pgrb2.1p00.f000.idx").status_code == 404


def test_gina_search_files_and_elements(tmp_path):
    from earthkeep.sources.gina import GINA

    with emulator("gina", tmp=tmp_path) as env:
        assert env["EARTHKEEP_VIIRS_SEGMENTS"] == "GMTCO,SVM15,SVM16"
        assert httpx.get(env["EARTHKEEP_TLE_URL"]).text.startswith("SUOMI NPP")
        today = datetime.now(UTC).date()
        params = {"start_date": (today - timedelta(days=1)).isoformat(), "end_date": today.isoformat(),
                  "sensors[]": GINA.sensor, "processing_levels[]": GINA.level, "facilities[]": "gilmore",
                  "satellites[]": ["snpp", "noaa20"]}
        found = httpx.get(env["EARTHKEEP_GINA_URL"] + GINA.path, params=params).json()
        assert len(found) >= 4 * 2 * 3
        head = httpx.head(found[0]["url"])
        assert head.status_code == 200 and int(head.headers["content-length"]) == found[0]["size"]


def test_laads_wants_the_printed_token(tmp_path):
    with emulator("laads", tmp=tmp_path) as env:
        listing = env["NIGHTLIGHTS_LAADS_URL"] + "/archive/allData/5200/VNP46A2/2024/032.json"
        assert httpx.get(listing).status_code == 401
        ok = httpx.get(listing, headers={"Authorization": f"Bearer {env['EARTHDATA_TOKEN']}"})
        assert ok.status_code == 200 and len(ok.json()["content"]) >= 2


def test_ckan_portal_size_and_faults_from_the_command_line(tmp_path):
    rules = json.dumps([{"kind": "status", "path": "/api/3/action/organization_list", "status": 503,
                         "times": None}])
    with emulator("ckan", "--datasets", "57", "--faults", rules, tmp=tmp_path) as env:
        portal = env["EARTHKEEP_RESCUE_PORTAL"]
        body = httpx.get(portal + "/api/3/action/package_search", params={"rows": 1}).json()
        assert body["success"] and body["result"]["count"] == 57
        assert httpx.get(portal + "/api/3/action/organization_list").status_code == 503


def test_files_keeps_the_old_dir_form(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "a.bin").write_bytes(bytes(range(256)) * 4)
    with emulator("--dir", str(served), tmp=tmp_path) as env:
        part = httpx.get(env["_URL"] + "/a.bin", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == bytes(range(10, 20))


@pytest.mark.parametrize("args, hint", [
    (["nosuch"], "choose one of"),
    (["gfs", "--grid", "2p00"], "--grid"),
    (["files"], "--dir"),
    (["ckan", "--faults", "{not json"], "--faults"),
])
def test_usage_errors_exit_2_with_the_reason(args, hint):
    r = subprocess.run([*CLI, "testbed", "serve", *args, "--port", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert hint in r.stderr


def test_list_names_every_emulator():
    r = subprocess.run([*CLI, "testbed", "list"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for name in ("gfs", "gina", "laads", "ckan", "files"):
        assert name in r.stdout
