"""NASA Black Marble VNP46A2 (daily BRDF-corrected night lights): where it lives, how to ask.

Three ways in, one module:

* **LAADS DAAC archive**: one HDF5 file per night and 10° tile, listed by
  ``<day dir>.json`` and fetched with an Earthdata bearer token
  (``EARTHDATA_TOKEN``) through the transfer engine. :func:`plan_laads_month`
  lists the nights of a month and returns what to fetch; it downloads nothing.
* **Google Earth Engine**: :func:`earth_engine_download_url` is the one function
  that talks to ``earthengine-api``. It builds the monthly median of the
  quality-masked band, clipped to the area on the 15" grid, and returns a
  GeoTIFF download URL that the transfer engine then fetches. Tests replace
  exactly this function (``earthkeep.testbed.earthengine``); nothing else of the
  Earth Engine path is substituted.
* **User upload** of a GeoTIFF for an area and month (see ``earthkeep.nightlights``).

Missing credentials raise :class:`~earthkeep.errors.ConfigError` naming the
missing variable; nothing is ever made up in place of data.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from earthkeep.errors import ConfigError, SourceUnavailable, Unauthorized
from earthkeep.nightlights.keys import raw_key
from earthkeep.transfer.engine import TransferRequest

if TYPE_CHECKING:
    from earthkeep.nightlights.settings import NightlightsSettings

log = structlog.get_logger(__name__)

# ------------------------------------------------------------------ providers

PRODUCT = "VNP46A2"


@dataclass(frozen=True)
class LaadsLayout:
    """The LAADS DAAC archive tree: one directory per product, year and day of year."""

    day_dir: str
    listing: str
    file: str
    versions: dict[str, str]


LAADS = LaadsLayout(
    day_dir="/archive/allData/{collection}/{product}/{year:04d}/{doy:03d}",
    listing="/archive/allData/{collection}/{product}/{year:04d}/{doy:03d}.json",
    file="/archive/allData/{collection}/{product}/{year:04d}/{doy:03d}/{name}",
    versions={"5200": "002", "5000": "001"},  # archive set -> version in the file name
)
FILENAME_TEMPLATE = "{product}.A{year:04d}{doy:03d}.h{h:02d}v{v:02d}.{version}.{production}.h5"
FILENAME = re.compile(
    r"^(?P<product>VNP46A2)\.A(?P<year>\d{4})(?P<doy>\d{3})\.h(?P<h>\d{2})v(?P<v>\d{2})"
    r"\.(?P<version>\d{3})\.(?P<production>\d{13})\.h5$"
)
TILE_DEGREES = 10.0
H_TILES, V_TILES = 36, 18


@dataclass(frozen=True)
class EarthEngineProduct:
    collection: str
    bands: tuple[str, ...]
    quality_band: str
    cloud_band: str


EARTH_ENGINE = EarthEngineProduct(
    collection="NASA/VIIRS/002/VNP46A2",
    bands=("DNB_BRDF_Corrected_NTL", "Gap_Filled_DNB_BRDF_Corrected_NTL"),
    quality_band="Mandatory_Quality_Flag",
    cloud_band="QF_Cloud_Mask",
)

# ---------------------------------------------------------------- tile grid


def tile_box(h: int, v: int) -> BaseGeometry:
    """The lon/lat box of tile ``h``/``v`` (h from 180°W eastwards, v from 90°N southwards)."""
    west, north = -180.0 + TILE_DEGREES * h, 90.0 - TILE_DEGREES * v
    return box(west, north - TILE_DEGREES, west + TILE_DEGREES, north)


def tiles_for(geometry: BaseGeometry) -> list[tuple[int, int]]:
    """The (h, v) tiles whose area intersects ``geometry``."""
    w, s, e, n = geometry.bounds
    h0, h1 = int((w + 180) // TILE_DEGREES), int((e + 180) // TILE_DEGREES)
    v0, v1 = int((90 - n) // TILE_DEGREES), int((90 - s) // TILE_DEGREES)
    out = []
    for h in range(max(h0, 0), min(h1, H_TILES - 1) + 1):
        for v in range(max(v0, 0), min(v1, V_TILES - 1) + 1):
            if tile_box(h, v).intersection(geometry).area > 0:
                out.append((h, v))
    return out


def granule_name(day: date, h: int, v: int, *, version: str = "002", production: str = "2024001000000") -> str:
    """The file name LAADS gives the tile of one night."""
    return FILENAME_TEMPLATE.format(product=PRODUCT, year=day.year, doy=day.timetuple().tm_yday, h=h, v=v,
                                    version=version, production=production)


def parse_granule_name(name: str) -> dict[str, Any] | None:
    m = FILENAME.match(name)
    if m is None:
        return None
    return {"year": int(m["year"]), "doy": int(m["doy"]), "h": int(m["h"]), "v": int(m["v"]),
            "version": m["version"], "production": m["production"]}


# ---------------------------------------------------------------- LAADS plan


@dataclass(frozen=True)
class Granule:
    """One night's tile to fetch (or already stored)."""

    name: str
    key: str
    url: str
    day: date
    tile: tuple[int, int]
    size: int | None


@dataclass
class MonthPlan:
    """What a month of LAADS data for an area needs."""

    tiles: list[tuple[int, int]]
    granules: list[Granule] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def requests(self, token: str) -> list[TransferRequest]:
        headers = bearer(token)
        return [TransferRequest(url=g.url, key=g.key, size=g.size, headers=headers,
                                content_type="application/x-hdf5") for g in self.granules]


def earthdata_token(settings: NightlightsSettings) -> str:
    """The Earthdata token, or a :class:`ConfigError` that says how to get one."""
    token = settings.earthdata_token.get_secret_value() if settings.earthdata_token else ""
    if not token:
        raise ConfigError(
            "EARTHDATA_TOKEN is not set: LAADS downloads need a NASA Earthdata bearer token "
            "(https://urs.earthdata.nasa.gov -> Generate Token)"
        )
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def plan_laads_month(settings: NightlightsSettings, geometry: BaseGeometry, days: Sequence[date],
                           *, client: httpx.AsyncClient, concurrency: int = 8) -> MonthPlan:
    """List every night of ``days`` on LAADS and keep the tiles the area needs."""
    token = earthdata_token(settings)
    plan = MonthPlan(tiles=tiles_for(geometry))
    wanted = set(plan.tiles)
    gate = asyncio.Semaphore(concurrency)

    async def one(day: date) -> tuple[date, list[dict[str, Any]] | None]:
        async with gate:
            return day, await _listing(settings, day, token, client)

    for day, content in await asyncio.gather(*(one(d) for d in days)):
        found = _granules(settings, day, content or [], wanted)
        if not found:
            plan.missing.append(day.isoformat())
        plan.granules.extend(found)
    return plan


def _granules(settings: NightlightsSettings, day: date, content: list[dict[str, Any]],
              wanted: set[tuple[int, int]]) -> list[Granule]:
    out = []
    doy = day.timetuple().tm_yday
    for entry in content:
        name = str(entry.get("name", ""))
        info = parse_granule_name(name)
        if info is None or (info["h"], info["v"]) not in wanted or (info["year"], info["doy"]) != (day.year, doy):
            continue
        path = LAADS.file.format(collection=settings.laads_collection, product=PRODUCT, year=day.year,
                                 doy=doy, name=name)
        size = int(entry["size"]) if str(entry.get("size", "")).isdigit() else None
        out.append(Granule(name, raw_key(settings.laads_collection, day.year, doy, name),
                           settings.laads_url + path, day, (info["h"], info["v"]), size))
    return out


async def _listing(settings: NightlightsSettings, day: date, token: str,
                   client: httpx.AsyncClient) -> list[dict[str, Any]] | None:
    """The ``content`` of one day's listing; None when LAADS has no such day (404)."""
    url = settings.laads_url + LAADS.listing.format(
        collection=settings.laads_collection, product=PRODUCT, year=day.year, doy=day.timetuple().tm_yday)
    try:
        r = await client.get(url, headers=bearer(token))
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"LAADS listing {url}: {type(exc).__name__}: {exc}") from exc
    if r.status_code == 404:
        return None
    if r.status_code in (401, 403) or "text/html" in r.headers.get("content-type", ""):
        raise Unauthorized(
            f"LAADS refused the Earthdata token (HTTP {r.status_code} for {url}); check EARTHDATA_TOKEN "
            "(tokens expire after 60 days)"
        )
    if r.status_code != 200:
        raise SourceUnavailable(f"LAADS listing {url} answered HTTP {r.status_code}; will retry")
    try:
        content = r.json().get("content", [])
    except ValueError as exc:
        raise SourceUnavailable(f"LAADS listing {url} is not JSON ({exc}); will retry") from exc
    return [c for c in content if isinstance(c, dict)]


# ----------------------------------------------------------- Earth Engine


@dataclass(frozen=True)
class EarthEngineCredentials:
    service_account: str
    key_file: str
    project: str | None


@dataclass(frozen=True)
class EarthEngineExport:
    """A monthly composite on a lon/lat grid: what :func:`earth_engine_download_url` is asked for."""

    geometry: dict[str, Any]
    start: str
    end: str
    band: str
    crs_transform: tuple[float, float, float, float, float, float]
    dimensions: tuple[int, int]
    accepted_flags: tuple[int, ...] = (0, 1)
    mask_cloudy: bool = True


def earth_engine_credentials(settings: NightlightsSettings) -> EarthEngineCredentials:
    """The service account to use, or a :class:`ConfigError` naming what is missing."""
    missing = [name for name, value in (("EARTHENGINE_SERVICE_ACCOUNT", settings.ee_service_account),
                                        ("EARTHENGINE_KEY_FILE", settings.ee_key_file)) if not value]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: Earth Engine exports "
            "need a service account and its JSON key (or use source laads_download with EARTHDATA_TOKEN)"
        )
    return EarthEngineCredentials(str(settings.ee_service_account), str(settings.ee_key_file),
                                  settings.ee_project)


def earth_engine_download_url(export: EarthEngineExport, credentials: EarthEngineCredentials) -> str:
    """THE Earth Engine adapter: the monthly median composite as a GeoTIFF download URL.

    Blocking (call it in a thread). Every other piece of the Earth Engine path
    is ordinary earthkeep code; tests substitute only this function.
    """
    import ee  # the only import of earthengine-api in earthkeep

    ee.Initialize(ee.ServiceAccountCredentials(credentials.service_account, credentials.key_file),
                  project=credentials.project)

    def masked(img: Any) -> Any:
        quality = img.select(EARTH_ENGINE.quality_band)
        keep = functools.reduce(lambda a, b: a.Or(b), [quality.eq(f) for f in export.accepted_flags])
        if export.mask_cloudy:
            keep = keep.And(img.select(EARTH_ENGINE.cloud_band).rightShift(6).bitwiseAnd(3).lte(1))
        return img.select(export.band).updateMask(keep)

    region = ee.Geometry(export.geometry, "EPSG:4326", False)
    composite = (ee.ImageCollection(EARTH_ENGINE.collection).filterDate(export.start, export.end)
                 .filterBounds(region).map(masked).median().clip(region).toFloat())
    return str(composite.getDownloadURL({
        "name": f"{PRODUCT}_{export.start}", "format": "GEO_TIFF", "filePerBand": False, "crs": "EPSG:4326",
        "crs_transform": list(export.crs_transform), "dimensions": f"{export.dimensions[0]}x{export.dimensions[1]}",
    }))
