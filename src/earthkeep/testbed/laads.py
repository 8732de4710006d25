"""A LAADS-DAAC-like archive of NASA Black Marble VNP46A2 tiles, on loopback.

What it covers (and what the real client code meets unchanged):

* the archive tree ``/archive/allData/<collection>/VNP46A2/<YYYY>/<DDD>/<file>``
  with real file names (``VNP46A2.A2024032.h21v09.002.<production>.h5``), byte
  ranges, ``HEAD``, ETag;
* the day listing ``<day dir>.json`` -> ``{"content": [{"name", "size",
  "last-modified"}, ...]}`` (the fields ``laads_data_download.py`` reads), with a
  tile the client must ignore;
* the Earthdata bearer token: without ``Authorization: Bearer <token>`` every
  request gets ``401``;
* the file search blackmarblepy reads, ``/api/v2/content/details?products=
  VNP46A2&archiveSet=5200&temporalRanges=<start>..<end>&regions=...&page=1`` ->
  ``{"content": [{"name", "downloadsLink", "start", "size", ...}], "n_pages": 1}``
  (every tile of every day in the range, the decoy included; ``regions`` is
  ignored: clients filter by tile);
* faults: days that are not published (``404``), files whose bytes are not
  HDF5 (``corrupt``).

Files are small but valid VNP46A2 HDF5 written with h5py: the
``HDFEOS/GRIDS/VNP_Grid_DNB/Data Fields`` group with ``DNB_BRDF-Corrected_NTL``
and ``Gap_Filled_DNB_BRDF-Corrected_NTL`` (uint16, ``scale_factor`` 0.1,
``_FillValue`` 65535), ``Mandatory_Quality_Flag`` (uint8, 0/1/2, fill 255),
``QF_Cloud_Mask`` (uint16 bit field), ``Snow_Flag``, ``DNB_Lunar_Irradiance``,
``Latest_High_Quality_Retrieval`` and the bounding-coordinate attributes. A tile
has ``tile_size`` cells a side (2400 in the real product; 240 by default here).

Radiance comes from a :class:`Scene`: Gaussian "cities" over a faint
background, growing by a fixed fraction per month, without night-to-night noise,
so the correct monthly composite is known exactly; a share of the nights is
cloudy, poor-quality or fill (with absurd radiances that masking must remove),
and cells in ``always_cloudy`` never have a clear night.

The grid group is ``VNP_Grid_DNB`` by default; ``grid_group`` writes
``VIIRS_Grid_DNB_2d`` instead (what blackmarblepy expects of collection 5200).
The tile numbers are fixed-length strings (``"21"``, ``"09"``), as in NASA's files.

Not covered: the LAADS search API (``/api/v1/files``), HTML directory pages,
Earthdata login redirects, NRT collections.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from earthkeep.sources.blackmarble import LAADS, PRODUCT, granule_name, parse_granule_name

GROUP = "HDFEOS/GRIDS/VNP_Grid_DNB/Data Fields"
GROUP_C2 = "HDFEOS/GRIDS/VIIRS_Grid_DNB_2d/Data Fields"
SCALE = 0.1
PRODUCTION = "2024060101010"
CLEAR = (3 << 4) | (1 << 1)  # high cloud-mask quality, land; detection bits 6-7 = 0 (confident clear)
CLOUDY = CLEAR | (3 << 6)


@dataclass(frozen=True)
class City:
    lon: float
    lat: float
    peak: float  # nW/cm2/sr at the centre
    radius: float  # degrees (Gaussian sigma)


@dataclass
class Scene:
    """Synthetic night lights: what every tile, night and Earth Engine export is cut from."""

    cities: tuple[City, ...] = (City(36.82, -1.29, 80.0, 0.08), City(39.67, -4.05, 40.0, 0.06))
    background: float = 0.2
    base_month: str = "2023-01"
    growth_per_month: float = 0.02
    cloudy: float = 0.15
    poor: float = 0.10
    fill: float = 0.05
    always_cloudy: tuple[float, float, float, float] | None = None  # west, south, east, north
    seed: int = 7

    def radiance(self, lon: np.ndarray, lat: np.ndarray, day: date) -> np.ndarray:
        """True radiance (nW/cm2/sr) of ``day``'s month at cell centres."""
        y0, m0 = (int(x) for x in self.base_month.split("-"))
        months = (day.year - y0) * 12 + (day.month - m0)
        out = np.full(lon.shape, self.background, dtype=np.float64)
        for c in self.cities:
            out += c.peak * np.exp(-((lon - c.lon) ** 2 + (lat - c.lat) ** 2) / (2 * c.radius**2))
        return out * (1 + self.growth_per_month) ** months

    def expected(self, lon: np.ndarray, lat: np.ndarray, day: date) -> np.ndarray:
        """The correct monthly composite: quantised radiance, NaN where no night is ever clear."""
        q = np.round(self.radiance(lon, lat, day) / SCALE) * SCALE
        return np.where(self._dark(lon, lat), np.nan, q)

    def _dark(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        if self.always_cloudy is None:
            return np.zeros(lon.shape, dtype=bool)
        w, s, e, n = self.always_cloudy
        return (lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)

    def night(self, lon: np.ndarray, lat: np.ndarray, day: date) -> dict[str, np.ndarray]:
        """One night's raw VNP46A2 layers (radiance counts, quality flag, cloud mask) at cell centres."""
        raw = np.clip(np.round(self.radiance(lon, lat, day) / SCALE), 0, 65534).astype(np.uint16)
        gap = raw.copy()
        ident = f"{self.seed}:{day.isoformat()}:{lon.flat[0]:.5f}:{lat.flat[0]:.5f}"
        u = np.random.default_rng(int(hashlib.sha256(ident.encode()).hexdigest()[:12], 16)).random(lon.shape)
        cloudy = (u < self.cloudy) | self._dark(lon, lat)
        poor = (u >= self.cloudy) & (u < self.cloudy + self.poor)
        fill = (u >= self.cloudy + self.poor) & (u < self.cloudy + self.poor + self.fill)
        quality = np.zeros(lon.shape, dtype=np.uint8)
        cloud = np.full(lon.shape, CLEAR, dtype=np.uint16)
        cloud[cloudy] = CLOUDY
        raw[cloudy] = 5000  # moonlit cloud tops: 500 nW that masking must drop
        raw[poor], quality[poor] = 9990, 2
        raw[fill], quality[fill], gap[fill] = 65535, 255, 65535
        return {"radiance": raw, "gap_filled": gap, "quality": quality, "cloud": cloud}


def tile_centres(h: int, v: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    res = 10.0 / size
    lons = -180.0 + 10.0 * h + (np.arange(size) + 0.5) * res
    lats = 90.0 - 10.0 * v - (np.arange(size) + 0.5) * res
    return np.meshgrid(lons, lats)


def write_granule(path: Path, day: date, h: int, v: int, scene: Scene, *, size: int = 240,
                  group: str = GROUP) -> Path:
    """Write one night's tile as a VNP46A2 HDF5 file (same layout and encodings as NASA's)."""
    lon, lat = tile_centres(h, v, size)
    layers = scene.night(lon, lat, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with h5py.File(tmp, "w") as f:
        _root_attrs(f, day, h, v)
        f.create_dataset("HDFEOS INFORMATION/StructMetadata.0", data=_struct_metadata(h, v, size))
        g = f.create_group(group)
        for name, key in (("DNB_BRDF-Corrected_NTL", "radiance"), ("Gap_Filled_DNB_BRDF-Corrected_NTL", "gap_filled")):
            _dataset(g, name, layers[key], fill=65535, scale=SCALE, units="nW_per_cm2_per_sr")
        _dataset(g, "DNB_Lunar_Irradiance", np.full(lon.shape, 12, np.uint16), fill=65535, scale=SCALE,
                 units="nW_per_cm2_per_sr")
        _dataset(g, "Mandatory_Quality_Flag", layers["quality"], fill=255)
        _dataset(g, "Latest_High_Quality_Retrieval", np.zeros(lon.shape, np.uint8), fill=255)
        _dataset(g, "QF_Cloud_Mask", layers["cloud"], fill=65535)
        _dataset(g, "Snow_Flag", np.zeros(lon.shape, np.uint8), fill=255)
    tmp.replace(path)
    return path


def _dataset(g: h5py.Group, name: str, data: np.ndarray, *, fill: int, scale: float | None = None,
             units: str | None = None) -> None:
    ds = g.create_dataset(name, data=data, compression="gzip", compression_opts=4, chunks=True)
    ds.attrs["_FillValue"] = np.array([fill], dtype=data.dtype)
    ds.attrs["long_name"] = name.replace("_", " ")
    if scale is not None:
        ds.attrs["scale_factor"] = np.array([scale])
        ds.attrs["add_offset"] = np.array([0.0])
    if units:
        ds.attrs["units"] = units


def _root_attrs(f: h5py.File, day: date, h: int, v: int) -> None:
    west, north = -180.0 + 10 * h, 90.0 - 10 * v
    for key, value in (("WestBoundingCoord", west), ("EastBoundingCoord", west + 10),
                       ("NorthBoundingCoord", north), ("SouthBoundingCoord", north - 10)):
        f.attrs[key] = np.array([value])
    f.attrs["HorizontalTileNumber"] = np.bytes_(f"{h:02d}")  # fixed-length strings, as in NASA's files
    f.attrs["VerticalTileNumber"] = np.bytes_(f"{v:02d}")
    f.attrs["ShortName"] = PRODUCT
    f.attrs["LongName"] = "VIIRS/NPP Gap-Filled Lunar BRDF-Adjusted Nighttime Lights Daily L3 Global 500m"
    f.attrs["RangeBeginningDate"] = day.isoformat()


def _struct_metadata(h: int, v: int, size: int) -> str:
    west, north = -180 + 10 * h, 90 - 10 * v
    return (f'GROUP=SwathStructure\nEND_GROUP=SwathStructure\nGROUP=GridStructure\n\tGROUP=GRID_1\n'
            f'\t\tGridName="VNP_Grid_DNB"\n\t\tXDim={size}\n\t\tYDim={size}\n'
            f'\t\tUpperLeftPointMtrs=({west * 1e6:.6f},{north * 1e6:.6f})\n'
            f'\t\tLowerRightMtrs=({(west + 10) * 1e6:.6f},{(north - 10) * 1e6:.6f})\n'
            f'\t\tProjection=HE5_GCTP_GEO\n\tEND_GROUP=GRID_1\nEND_GROUP=GridStructure\n')


@dataclass
class LaadsArchive:
    """The archive's files (written on first request) and the ASGI app that serves them."""

    root: Path
    token: str
    scene: Scene = field(default_factory=Scene)
    tiles: tuple[tuple[int, int], ...] = ((21, 9), (22, 9))
    decoy_tiles: tuple[tuple[int, int], ...] = ((5, 5),)
    tile_size: int = 240
    collection: str = "5200"
    grid_group: str = GROUP
    missing_days: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, int]] = field(default_factory=list)

    def day_dir(self, day: date) -> Path:
        rel = LAADS.day_dir.format(collection=self.collection, product=PRODUCT, year=day.year,
                                   doy=day.timetuple().tm_yday)
        return self.root / rel.lstrip("/")

    def names(self, day: date) -> list[str]:
        version = LAADS.versions.get(self.collection, "002")
        return [granule_name(day, h, v, version=version, production=PRODUCTION)
                for h, v in (*self.tiles, *self.decoy_tiles)]

    def materialise(self, day: date) -> list[Path]:
        """Write the day's tiles (once) and return their paths."""
        out = []
        for name in self.names(day):
            path = self.day_dir(day) / name
            if not path.exists():
                info = parse_granule_name(name)
                assert info is not None
                if name in self.corrupt:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"<html>not HDF5: " + name.encode() + b"</html>" + bytes(4096))
                else:
                    write_granule(path, day, info["h"], info["v"], self.scene, size=self.tile_size,
                                  group=self.grid_group)
            out.append(path)
        return out

    def downloads(self) -> list[str]:
        """Paths of the files served (GET with a body), in order."""
        return [p for m, p, status in self.requests if m == "GET" and status in (200, 206) and p.endswith(".h5")]

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/archive/allData/{rest:path}", self._serve, methods=["GET", "HEAD"]),
                                 Route("/api/v2/content/details", self._details)])

    async def _details(self, request: Request) -> Response:
        response = self._search(request)
        self.requests.append((request.method, request.url.path, response.status_code))
        return response

    def _search(self, request: Request) -> Response:
        q = request.query_params
        if q.get("products") != PRODUCT or q.get("archiveSet", self.collection) != self.collection:
            return JSONResponse({"content": [], "n_pages": 1})
        try:
            first, last = (date.fromisoformat(d) for d in q.get("temporalRanges", "").split(".."))
        except ValueError:
            return JSONResponse({"error": "temporalRanges: give YYYY-MM-DD..YYYY-MM-DD"}, status_code=400)
        if int(q.get("page", "1")) != 1:
            return JSONResponse({"content": [], "n_pages": 1})
        base = str(request.base_url).rstrip("/")
        content = []
        for ordinal in range(first.toordinal(), last.toordinal() + 1):
            day = date.fromordinal(ordinal)
            if day.isoformat() in self.missing_days:
                continue
            rel = self.day_dir(day).relative_to(self.root).as_posix()
            for entry in self._listing(day):
                content.append({**entry, "start": f"{day.isoformat()}T00:00:00", "archiveSets": self.collection,
                                "downloadsLink": f"{base}/{rel}/{entry['name']}"})
        return JSONResponse({"content": content, "n_pages": 1})

    async def _serve(self, request: Request) -> Response:
        path = request.url.path
        response = self._answer(request, path)
        self.requests.append((request.method, path, response.status_code))
        return response

    def _answer(self, request: Request, path: str) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "Unauthorized: an Earthdata bearer token is required"}, status_code=401)
        parts = path.split("/")  # '', archive, allData, collection, product, year, day[.json], [name]
        if len(parts) < 7 or parts[3] != self.collection or parts[4] != PRODUCT:
            return JSONResponse({"error": "not found"}, status_code=404)
        try:
            day = datetime.strptime(parts[5] + parts[6].removesuffix(".json"), "%Y%j").date()
        except ValueError:
            return JSONResponse({"error": "not found"}, status_code=404)
        if day.isoformat() in self.missing_days:
            return JSONResponse({"error": "not found"}, status_code=404)
        if len(parts) == 7 and parts[6].endswith(".json"):
            return JSONResponse({"content": self._listing(day)})
        if len(parts) == 8 and parts[7] in self.names(day):
            self.materialise(day)
            return FileResponse(self.day_dir(day) / parts[7], media_type="application/x-hdf5")
        return JSONResponse({"error": "not found"}, status_code=404)

    def _listing(self, day: date) -> list[dict[str, Any]]:
        out = []
        for p in self.materialise(day):
            st = p.stat()
            modified = datetime.fromtimestamp(st.st_mtime, tz=UTC)
            out.append({"name": p.name, "size": st.st_size, "last-modified": format_datetime(modified, usegmt=True)})
        return out


def month_days(month: str) -> list[date]:
    y, m = (int(x) for x in month.split("-"))
    days = []
    d = date(y, m, 1)
    while d.month == m:
        days.append(d)
        d = date.fromordinal(d.toordinal() + 1)
    return days


def expected_on_grid(scene: Scene, west: float, north: float, res: float, width: int, height: int,
                     day: date) -> np.ndarray:
    """The correct composite on a grid (for tests): the scene at cell centres."""
    lons = west + (np.arange(width) + 0.5) * res
    lats = north - (np.arange(height) + 0.5) * res
    lon, lat = np.meshgrid(lons, lats)
    return scene.expected(lon, lat, day).astype(np.float32)


