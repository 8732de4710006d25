"""A live emulated GFS archive: cycles appear on NOAA's schedule relative to the clock.

:mod:`earthkeep.testbed.gfs` writes fixed trees for tests; this serves the same
layout (``/gfs.YYYYMMDD/HH/atmos/gfs.tHHz.pgrb2.<grid>.fFFF`` and ``.idx``) for a
running service, the demo and newcomers, so ``earthkeep serve`` finds today's
cycles as it would on the AWS bucket:

* a cycle at 00/06/12/18 UTC starts publishing ``first_hour_lag`` after its time
  (3 h 30 min, as NOAA), one forecast hour every ``hour_step`` (45 s per 3 h step, so
  f120 lands about 30 min later); before that an hour's GRIB and ``.idx`` are ``404``;
* cycles older than ``keep_days`` (10, as NOMADS) are gone (``404``);
* a file is rendered on its first request (GRIB, then its ``.idx`` read back with
  eccodes, both written atomically under ``root``) and served with byte ranges
  by :func:`earthkeep.testbed.fileserver.create_file_app`;
* every grid of :data:`earthkeep.raster.grib.GRIDS` is served (``0p25`` is the real
  size, ~0.5 s and ~25 MB a file; ``1p00`` is 16x smaller).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from starlette.types import Receive, Scope, Send

from earthkeep.raster.grib import GRIDS
from earthkeep.testbed import gfs
from earthkeep.testbed.fileserver import create_file_app

PATH = re.compile(r"^/gfs\.(?P<date>\d{8})/(?P<cycle>\d{2})/atmos/gfs\.t(?P=cycle)z\.pgrb2\."
                  r"(?P<grid>\dp\d\d)\.f(?P<hour>\d{3})(?P<idx>\.idx)?$")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class LiveGfs:
    """The archive's state: where files are rendered, the publication clock, what was asked."""

    root: Path
    first_hour_lag: timedelta = timedelta(hours=3, minutes=30)
    hour_step: timedelta = timedelta(seconds=15)  # per forecast hour: f120 is 30 min after f000
    keep_days: int = 10
    max_hour: int = 384
    packing: str = "ccsds"
    seed: int = 0
    clock: Callable[[], datetime] = _utcnow
    rendered: list[str] = field(default_factory=list)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def published_at(self, cycle: datetime, hour: int) -> datetime:
        """When ``hour`` of ``cycle`` (aware UTC) appears on the archive."""
        return cycle + self.first_hour_lag + hour * self.hour_step

    def is_published(self, cycle: datetime, hour: int) -> bool:
        now = self.clock()
        return self.published_at(cycle, hour) <= now and now - cycle <= timedelta(days=self.keep_days)

    def ensure(self, cycle: datetime, hour: int, grid: str) -> None:
        """Render the GRIB file and its ``.idx`` once (concurrent requests wait for the first)."""
        rel = gfs.relative_path(cycle.replace(tzinfo=None), hour, grid)
        with self._guard:
            lock = self._locks.setdefault(rel, threading.Lock())
        with lock:
            if (self.root / (rel + ".idx")).exists():
                return
            gfs.add_hour(self.root, cycle.replace(tzinfo=None), hour, grid=grid, seed=self.seed,
                         packing=self.packing)
            self.rendered.append(rel)

    def app(self) -> LiveGfsApp:
        self.root.mkdir(parents=True, exist_ok=True)
        return LiveGfsApp(self)


class LiveGfsApp:
    """ASGI: ``404`` for what NOAA has not published (or no longer keeps), else render and serve."""

    def __init__(self, archive: LiveGfs) -> None:
        self.archive = archive
        self.files = create_file_app(archive.root)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = PATH.match(scope["path"])
            if found is None or not await self._available(found):
                await _not_found(send)
                return
        await self.files(scope, receive, send)

    async def _available(self, found: re.Match[str]) -> bool:
        try:
            cycle = datetime.strptime(found["date"] + found["cycle"], "%Y%m%d%H").replace(tzinfo=UTC)
        except ValueError:
            return False
        hour, grid = int(found["hour"]), found["grid"]
        if cycle.hour % 6 or grid not in GRIDS or hour > self.archive.max_hour:
            return False
        if not self.archive.is_published(cycle, hour):
            return False
        await asyncio.to_thread(self.archive.ensure, cycle, hour, grid)
        return True


async def _not_found(send: Send) -> None:
    body = b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"application/xml"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
