"""The live GFS archive publishes hours on NOAA's schedule relative to its clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from earthkeep.testbed.gfs_live import LiveGfs
from earthkeep.testbed.runner import serve_app

CYCLE = datetime(2026, 12, 6, 0, tzinfo=UTC)


def _url(hour: int, idx: bool = False) -> str:
    return f"/gfs.20261206/00/atmos/gfs.t00z.pgrb2.1p00.f{hour:03d}" + (".idx" if idx else "")


def test_hours_appear_after_the_lag_and_old_cycles_are_gone(tmp_path: Path) -> None:
    now = CYCLE + timedelta(hours=3, minutes=30) + 3 * timedelta(seconds=15)  # f000..f003 published
    archive = LiveGfs(tmp_path, clock=lambda: now)
    with serve_app(archive.app()) as base, httpx.Client(base_url=base) as client:
        idx = client.get(_url(3, idx=True))
        assert idx.status_code == 200 and ":UGRD:10 m above ground:" in idx.text
        first = idx.text.splitlines()[0].split(":")
        assert int(first[1]) == 0
        grib = client.get(_url(3), headers={"Range": "bytes=0-3"})
        assert grib.status_code == 206 and grib.content == b"GRIB"
        assert client.get(_url(6, idx=True)).status_code == 404  # not yet published
        assert client.get(_url(6)).status_code == 404
        assert client.get("/gfs.20261206/03/atmos/gfs.t03z.pgrb2.1p00.f000").status_code == 404  # no 03z cycle
        assert client.get("/gfs.20261206/00/atmos/gfs.t00z.pgrb2.9p99.f000").status_code == 404
    assert archive.rendered == ["gfs.20261206/00/atmos/gfs.t00z.pgrb2.1p00.f003"]
    later = LiveGfs(tmp_path, clock=lambda: CYCLE + timedelta(days=11))
    assert not later.is_published(CYCLE, 0)
    assert later.is_published(CYCLE + timedelta(days=10, hours=6), 0)
