"""A GINA-NRT-like products search and file server of VIIRS SDR granules, on loopback.

What it covers (what :mod:`earthkeep.sources.gina` and the mirror meet unchanged):

* ``GET /products.json?...&start_date=&end_date=&sensors[]=&processing_levels[]=
  &facilities[]=&satellites[]=`` -> a JSON list of ``{"url", "md5sum", "size",
  "start_time", "satellite", "sensor", "processing_level", "facility"}``, filtered
  by every parameter;
* the files under ``/products/<facility>/<name>`` with byte ranges, ``HEAD`` and
  ETag (served by :func:`earthkeep.testbed.fileserver.create_file_app`);
* realistic names (``SVM16_npp_d20190422_t1828348_e1829590_b38780_c..._cspp_dev.h5``):
  granules every 85.4 s, orbit numbers that advance every 101.4 min, geolocation
  and band segments, one file per facility (the creation times differ);
* small but valid HDF5 files written with h5py in the SDR layout
  (``All_Data/VIIRS-M16-SDR_All/BrightnessTemperature`` ...,
  ``Data_Products/VIIRS-M16-SDR/VIIRS-M16-SDR_Gran_0`` with the time and orbit
  attributes), padded with incompressible bytes to ``file_size``;
* new granules over time (:meth:`GinaNrt.add_granules`, or ``grow_every_s``);
* faults: ``corrupt`` (not HDF5, listed md5 matches the bad bytes), ``wrong_md5``
  (listed md5 differs), ``truncated`` (the served file is shorter than listed),
  ``hostile=True`` (entries with ``../``, absolute paths, NUL bytes, other hosts);
  wrap :meth:`GinaNrt.app` in :class:`earthkeep.testbed.faults.FaultInjector`
  for network faults;
* ``GET /elements/weather.txt``: three-line orbital elements (TLE) of the
  platforms with today's epoch, valid for pyorbital.

Not covered: GINA's HTML pages, its other sensors and levels (always empty lists).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from earthkeep.sources.gina import GINA, PLATFORMS, SdrName
from earthkeep.testbed.fileserver import create_file_app

GRANULE_S = 85.4
ORBIT_MIN = 101.4
BAND_NAMES = {"SVM": "M", "SVI": "I", "SVD": "DNB"}
GEO_NAMES = {"GMTCO": "VIIRS-MOD-GEO-TC", "GITCO": "VIIRS-IMG-GEO-TC", "GDNBO": "VIIRS-DNB-GEO"}
TLE = {  # name, catalogue number, inclination, mean motion (rev/day), mean anomaly offset
    "snpp": ("SUOMI NPP", 37849, 98.74, 14.1956, 0.0),
    "noaa20": ("NOAA 20", 43013, 98.73, 14.1953, 180.0),
    "noaa21": ("NOAA 21", 54234, 98.75, 14.1952, 90.0),
}


def _product(segment: str) -> str:
    if segment in GEO_NAMES:
        return GEO_NAMES[segment]
    if segment == "SVDNB":
        return "VIIRS-DNB-SDR"
    return f"VIIRS-{BAND_NAMES[segment[:3]]}{int(segment[3:])}-SDR"


def write_sdr(path: Path, sdr: SdrName, size: int) -> None:
    """One SDR granule file in the JPSS layout, about ``size`` bytes (incompressible padding)."""
    product = _product(sdr.segment)
    seed = int(hashlib.sha256(path.name.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".part")
    with h5py.File(tmp, "w") as f:
        f.attrs["Distributor"] = np.bytes_("cspp")
        f.attrs["Mission_Name"] = np.bytes_("S-NPP/JPSS")
        f.attrs["Platform_Short_Name"] = np.bytes_(sdr.orig_platform_name.upper())
        data = f.create_group(f"All_Data/{product}_All")
        rows = max(16, min(768, size // 6400))
        if sdr.segment in GEO_NAMES:
            data.create_dataset("Latitude", data=rng.uniform(50, 72, (rows, 800)).astype(np.float32))
            data.create_dataset("Longitude", data=rng.uniform(-180, -130, (rows, 800)).astype(np.float32))
        else:
            data.create_dataset("Radiance", data=rng.integers(0, 65528, (rows, 800), dtype=np.uint16))
            data.create_dataset("RadianceFactors", data=np.array([0.0025, -0.2], np.float32))
        pad = max(0, size - rows * 800 * (8 if sdr.segment in GEO_NAMES else 2) - 16_000)
        data.create_dataset("Padding", data=np.frombuffer(rng.bytes(pad), np.uint8))
        gran = f.create_group(f"Data_Products/{product}").create_dataset(f"{product}_Gran_0", data=np.zeros(1))
        gran.attrs["Beginning_Date"] = np.bytes_(sdr.start_time.strftime("%Y%m%d"))
        gran.attrs["Beginning_Time"] = np.bytes_(sdr.start_time.strftime("%H%M%S.%fZ"))
        gran.attrs["Ending_Date"] = np.bytes_(sdr.end_time.strftime("%Y%m%d"))
        gran.attrs["Ending_Time"] = np.bytes_(sdr.end_time.strftime("%H%M%S.%fZ"))
        gran.attrs["N_Beginning_Orbit_Number"] = np.array([sdr.orbit_number], np.uint64)
    tmp.replace(path)


def _tle_checksum(line: str) -> str:
    total = sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68])
    return line[:68] + str(total % 10)


def tle_text(platforms: list[str], epoch: datetime) -> str:
    """Three-line element sets of ``platforms`` at ``epoch`` (fixed, plausible orbits)."""
    doy = epoch.timetuple().tm_yday + (epoch.hour * 3600 + epoch.minute * 60 + epoch.second) / 86400
    lines = []
    for p in platforms:
        name, num, inc, mm, ma = TLE[p]
        l1 = f"1 {num:05d}U 11061A   {epoch:%y}{doy:012.8f}  .00000023  00000-0  31689-4 0  999"
        l2 = f"2 {num:05d} {inc:8.4f} {50.0:8.4f} 0001234  90.0000 {ma:8.4f} {mm:11.8f}12345"
        lines += [name, _tle_checksum(l1.ljust(69)), _tle_checksum(l2.ljust(69))]
    return "\n".join(lines) + "\n"


@dataclass
class Granule:
    sdr: SdrName
    name: str
    facility: str
    platform: str
    md5: str = ""
    size: int = 0


@dataclass
class GinaNrt:
    """The emulator's state (files under ``root``) and its ASGI app."""

    root: Path
    start: datetime = field(default_factory=lambda: (datetime.now(UTC) - timedelta(hours=2)).replace(
        tzinfo=None, microsecond=0))
    platforms: tuple[str, ...] = ("snpp", "noaa20")
    segments: tuple[str, ...] = ("GMTCO", "SVM15", "SVM16")
    facilities: tuple[str, ...] = ("gilmore", "uafgina")
    file_size: int = 64 * 1024
    orbit0: int = 38780
    corrupt: set[str] = field(default_factory=set)
    wrong_md5: set[str] = field(default_factory=set)
    truncated: set[str] = field(default_factory=set)
    hostile: bool = False
    grow_every_s: float | None = None
    granules: list[Granule] = field(default_factory=list)
    searches: list[dict[str, Any]] = field(default_factory=list)
    _slots: int = 0
    _created: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def sdr_at(self, slot: int, platform: str, segment: str, facility: str) -> SdrName:
        offset = 40.0 * list(PLATFORMS).index(platform)
        t0 = self.start + timedelta(seconds=slot * GRANULE_S + offset)
        t0 = t0.replace(microsecond=(t0.microsecond // 100_000) * 100_000)
        end = t0 + timedelta(seconds=GRANULE_S - 0.2)
        end = end.replace(microsecond=(end.microsecond // 100_000) * 100_000)
        orbit = self.orbit0 + math.floor((t0 - self.start).total_seconds() / (ORBIT_MIN * 60))
        created = t0 + timedelta(minutes=10, seconds=self.facilities.index(facility) + 0.285541)
        return SdrName(segment, PLATFORMS[platform].orig, t0, end, orbit, created, "cspp_dev")

    def add_granules(self, slots: int = 1) -> list[Granule]:
        """Publish the next ``slots`` granule times (every platform, segment and facility); the new files."""
        new = []
        with self._lock:
            for _ in range(slots):
                for platform in self.platforms:
                    for facility in self.facilities:
                        for segment in self.segments:
                            new.append(self._make(self.sdr_at(self._slots, platform, segment, facility),
                                                  platform, facility))
                self._slots += 1
            self.granules += new
        return new

    def path(self, g: Granule) -> Path:
        return self.root / g.facility / g.name

    def _make(self, sdr: SdrName, platform: str, facility: str) -> Granule:
        name = sdr.format()
        g = Granule(sdr, name, facility, platform)
        p = self.path(g)
        p.parent.mkdir(parents=True, exist_ok=True)
        if name in self.corrupt:
            p.write_bytes(b"<html><body>502 Bad Gateway</body></html>" + bytes(2048))
        else:
            write_sdr(p, sdr, self.file_size)
        raw = p.read_bytes()
        g.md5, g.size = hashlib.md5(raw, usedforsecurity=False).hexdigest(), len(raw)
        if name in self.wrong_md5:
            g.md5 = hashlib.md5(raw + b"x", usedforsecurity=False).hexdigest()
        if name in self.truncated:
            p.write_bytes(raw[: len(raw) // 2])
        return g

    def names(self, facility: str | None = None) -> list[str]:
        return [g.name for g in self.granules if facility is None or g.facility == facility]

    def tick(self) -> None:
        """With ``grow_every_s``: add the granules that 'arrived' since the emulator started."""
        if self.grow_every_s:
            due = int((time.monotonic() - self._created) / self.grow_every_s)
            if due > self._slots:
                self.add_granules(due - self._slots)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route(GINA.path, self._search, methods=["GET"]),
            Route("/elements/weather.txt", self._elements, methods=["GET", "HEAD"]),
            Mount("/products", app=create_file_app(self._ensure_root())),
        ])

    def _ensure_root(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    async def _elements(self, request: Request) -> Response:
        return PlainTextResponse(tle_text(list(TLE), datetime.now(UTC)))

    async def _search(self, request: Request) -> Response:
        self.tick()
        q = request.query_params
        self.searches.append({k: q.getlist(k) for k in q})
        base = str(request.base_url).rstrip("/")
        try:
            lo = datetime.strptime(q["start_date"], GINA.date_format)
            hi = datetime.strptime(q["end_date"], GINA.date_format) + timedelta(days=1)
        except (KeyError, ValueError):
            return JSONResponse({"error": "start_date and end_date (YYYY-MM-DD) are required"}, status_code=400)
        if q.getlist("sensors[]") != [GINA.sensor] or q.getlist("processing_levels[]") != [GINA.level]:
            return JSONResponse([])
        sats, facs = set(q.getlist("satellites[]")), set(q.getlist("facilities[]"))
        with self._lock:
            out = [self._entry(base, g) for g in self.granules
                   if g.platform in sats and g.facility in facs and lo <= g.sdr.start_time < hi]
        if self.hostile:
            out += hostile_entries(base, next(iter(facs), "gilmore"))
        return JSONResponse(out)

    def _entry(self, base: str, g: Granule) -> dict[str, Any]:
        return {"url": f"{base}/products/{g.facility}/{g.name}", "md5sum": g.md5, "size": g.size,
                "start_time": g.sdr.start_time.isoformat() + "Z", "satellite": g.platform, "sensor": "viirs",
                "processing_level": "level1", "facility": g.facility, "status": "complete"}


HOSTILE_NAME = "SVM16_npp_d20190422_t1828348_e1829590_b38780_c20190422183926285541_cspp_dev.h5"


def hostile_entries(base: str, facility: str) -> list[Any]:
    """Listing entries that must all be refused."""
    md5 = "0" * 32
    urls = [
        f"{base}/products/{facility}/../../../etc/passwd",
        f"{base}/products/{facility}/%2e%2e/%2e%2e/{HOSTILE_NAME}",
        f"{base}/products/{facility}/..%2f..%2f{HOSTILE_NAME}",
        f"/etc/{HOSTILE_NAME}",
        f"file:///etc/{HOSTILE_NAME}",
        f"http://203.0.113.7/products/{facility}/{HOSTILE_NAME}",
        f"{base}/products/{facility}/{HOSTILE_NAME}%00.txt",
        f"{base}/products/{facility}/{HOSTILE_NAME}\x00",
        f"{base}/products/{facility}/evil.sh",
        f"{base}/products/{facility}/..",
    ]
    entries: list[Any] = [{"url": u, "md5sum": md5, "size": 10, "facility": facility} for u in urls]
    bad_md5 = {"url": f"{base}/products/{facility}/{HOSTILE_NAME}", "md5sum": "../x"}
    return [*entries, {"md5sum": md5}, "not an object", bad_md5]
