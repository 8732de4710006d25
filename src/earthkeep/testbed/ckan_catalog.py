"""A synthetic CKAN catalog, generated deterministically from a seed, that changes over time.

:class:`SyntheticPortal` holds organizations and datasets shaped like
catalog.data.gov's ``package_search`` results (``organization``, ``tags``,
``groups``, ``extras``, ``resources`` with ``format``/``mimetype``/``size``/``hash``,
``tracking_summary``, ``metadata_modified`` as naive UTC ISO strings with
microseconds). 20,000 datasets build in about a second.

Resources cover what a rescue meets on a real portal: files of many formats
(CSV, NetCDF, ZIP, JSON, GeoTIFF, HDF5, PDF ...), HTML landing pages linking to
files (and to a second page, an off-site page, ``mailto:``), API endpoints,
services (WMS, ArcGIS REST), URLs that answer 404, redirects, slow and flaky
hosts, hostile URLs (``file://``, cloud metadata, private ranges, FTP), sizes that
are missing, wrong, written as text or absurdly large, and correct or bogus
``hash`` values. A block of datasets shares one ``metadata_modified`` (a bulk
re-harvest), more than one search page can hold.

Resource URLs on the emulator's own host are stored as ``{base}/...`` and filled
in per request (:meth:`SyntheticPortal.render`). :meth:`SyntheticPortal.advance`
adds, modifies and removes datasets at a later virtual time.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

BASE = "{base}"
AGENCIES = (
    "noaa", "nasa", "epa", "usgs", "doe", "usda", "fema", "census", "nps", "fws", "blm", "usace", "nrel", "ornl",
    "cdc", "dot", "faa", "hud", "doi", "boem", "bsee", "fs", "nrcs", "ars", "ers", "nass", "eia", "ferc", "nrc",
    "gsa",
)
TAGS = ("climate", "weather", "ocean", "temperature", "precipitation", "sea-level", "drought", "emissions",
        "wildfire", "hurricanes", "flood", "air-quality", "snow", "ice", "carbon", "energy", "agriculture",
        "biodiversity", "coastal", "soil", "water", "satellite", "model", "forecast", "greenhouse-gas")
GROUPS = ("climate5434", "ocean", "agriculture", "energy", "local", "ecosystems", "disasters")
TOPICS = ("Surface Temperature", "Precipitation Totals", "Sea Level Rise", "Drought Monitor", "Air Quality Index",
          "Greenhouse Gas Inventory", "Wildfire Perimeters", "Snow Cover", "Sea Ice Extent", "Streamflow",
          "Soil Moisture", "Coastal Flooding", "Hurricane Tracks", "Carbon Flux", "Ocean Heat Content")
PLACES = ("Alaska", "Gulf of Mexico", "Great Lakes", "Pacific Northwest", "Southwest", "Northeast", "Florida",
          "California", "Colorado River Basin", "Chesapeake Bay", "Hawaii", "Puerto Rico", "CONUS", "Arctic")
# format, extension, media type, weight
FILES = (("CSV", "csv", "text/csv", 30), ("NetCDF", "nc", "application/x-netcdf", 14),
         ("ZIP", "zip", "application/zip", 12), ("JSON", "json", "application/json", 9),
         ("GeoTIFF", "tif", "image/tiff", 5), ("HDF5", "h5", "application/x-hdf5", 4),
         ("PDF", "pdf", "application/pdf", 6), ("XML", "xml", "application/xml", 5),
         ("XLSX", "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", 4),
         ("GeoJSON", "geojson", "application/geo+json", 3), ("KML", "kml", "application/vnd.google-earth.kml+xml", 2),
         ("TXT", "txt", "text/plain", 3))
FILE_CUM = tuple(itertools.accumulate(f[3] for f in FILES))
HOSTILE = ("file:///etc/passwd", "http://169.254.169.254/latest/meta-data/iam/", "http://10.1.2.3/data/secret.csv",
           "http://192.168.0.10/admin", "ftp://ftp.example.gov/pub/data.csv", "http://[::1]:6379/",
           "gopher://127.0.0.1:25/")
# special resource kinds and their share of resources (the rest are plain files)
SPECIAL = (("landing", 0.05), ("missing", 0.02), ("redirect", 0.03), ("slow", 0.01), ("flaky", 0.02),
           ("api", 0.015), ("service", 0.015), ("hostile", 0.003))
SPAN_START = datetime(2012, 1, 1, tzinfo=UTC)


def iso(ts: datetime) -> str:
    """CKAN's timestamp format: naive UTC with microseconds."""
    return ts.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def content_bytes(path: str, size: int) -> bytes:
    """The bytes the emulator serves for a file path (deterministic)."""
    return random.Random(path).randbytes(size)


@dataclass
class PortalSpec:
    """What to generate."""

    datasets: int = 20_000
    organizations: int = 60
    seed: int = 42
    now: datetime = datetime(2024, 6, 1, tzinfo=UTC)
    tie_block: int = 1500
    max_file_bytes: int = 16_384


@dataclass
class Changes:
    """What one :meth:`SyntheticPortal.advance` did (dataset ids)."""

    created: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class SyntheticPortal:
    """Organizations and datasets of an emulated CKAN portal, indexed by ``metadata_modified``."""

    def __init__(self, spec: PortalSpec | None = None) -> None:
        self.spec = spec or PortalSpec()
        self.rng = random.Random(self.spec.seed)
        self.now = self.spec.now
        self.orgs: dict[str, dict[str, Any]] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.names: dict[str, str] = {}
        self.files: dict[str, int] = {}  # path -> true size
        self.pages: dict[str, dict[str, Any]] = {}  # landing pages: title, links, sub-page
        self.removed: set[str] = set()
        self._serial = 0
        self._make_orgs()
        self._orgs = self.org_list
        self._org_cum = list(itertools.accumulate(1.0 / (i + 1) ** 0.8 for i in range(len(self._orgs))))
        for _ in range(self.spec.datasets):
            self._add(self._new_dataset(self._past()))
        self._make_tie_block()
        self.reindex()

    # ------------------------------------------------------------ generation

    @property
    def org_list(self) -> list[dict[str, Any]]:
        return list(self.orgs.values())

    def _uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def _make_orgs(self) -> None:
        for i in range(self.spec.organizations):
            agency = AGENCIES[i % len(AGENCIES)]
            name = f"{agency}-gov" if i < len(AGENCIES) else f"{agency}-region-{i // len(AGENCIES)}-gov"
            oid = self._uuid()
            self.orgs[oid] = {
                "id": oid, "name": name, "title": name.replace("-", " ").upper(), "type": "organization",
                "description": f"Data published by {name}.", "image_url": "", "created": iso(SPAN_START),
                "is_organization": True, "approval_status": "approved", "state": "active",
            }

    def _past(self) -> datetime:
        span = (self.now - SPAN_START).total_seconds()
        # more recent modifications are more common, as on a live portal
        return SPAN_START + timedelta(seconds=span * self.rng.random() ** 0.7)

    def _new_dataset(self, modified: datetime) -> dict[str, Any]:
        rng = self.rng
        self._serial += 1
        org = rng.choices(self._orgs, cum_weights=self._org_cum)[0]
        topic, place = rng.choice(TOPICS), rng.choice(PLACES)
        name = f"{topic}-{place}-{self._serial}".lower().replace(" ", "-")
        did = self._uuid()
        created = min(modified, SPAN_START + (modified - SPAN_START) * rng.random())
        tags = rng.sample(TAGS, rng.randint(1, 5))
        groups = rng.sample(GROUPS, rng.choice((0, 0, 1, 1, 2)))
        ds = {
            "id": did, "name": name, "title": f"{topic} - {place} ({self._serial})", "type": "dataset",
            "notes": f"{topic} for {place}, compiled by {org['title']}.", "private": False, "state": "active",
            "author": None, "author_email": None, "maintainer": org["title"],
            "maintainer_email": f"data@{org['name']}.example.gov", "license_id": rng.choice(("cc-zero", "other-pd")),
            "license_title": "Public Domain", "isopen": True, "url": None, "version": None,
            "metadata_created": iso(created), "metadata_modified": iso(modified),
            "owner_org": org["id"], "organization": dict(org),
            "tags": [{"id": _tag_id(t), "name": t, "display_name": t, "state": "active", "vocabulary_id": None}
                     for t in tags],
            "groups": [{"id": _tag_id(g), "name": g, "title": g.title(), "display_name": g.title(),
                        "description": "", "image_display_url": ""} for g in groups],
            "extras": [{"key": "harvest_source_title", "value": f"{org['name']} data.json"},
                       {"key": "publisher", "value": org["title"]}],
            "tracking_summary": {"total": int(rng.paretovariate(1.2) * 10), "recent": rng.randint(0, 50)},
            "relationships_as_object": [], "relationships_as_subject": [],
        }
        ds["resources"] = [self._resource(ds, i) for i in range(rng.choice((1, 1, 2, 2, 3, 3, 4, 6)))]
        ds["num_resources"], ds["num_tags"] = len(ds["resources"]), len(tags)
        return ds

    def _resource(self, ds: dict[str, Any], position: int) -> dict[str, Any]:
        rng = self.rng
        fmt, ext, mime, _ = rng.choices(FILES, cum_weights=FILE_CUM)[0]
        rid = self._uuid()
        org = ds["organization"]["name"]
        path = f"/files/{org}/{ds['name']}/{position}-{rid[:8]}.{ext}"
        res = {"id": rid, "package_id": ds["id"], "name": f"{ds['title']} [{fmt}]", "description": "",
               "format": fmt, "mimetype": mime, "url": BASE + path, "size": None, "hash": "", "position": position,
               "created": ds["metadata_created"], "last_modified": ds["metadata_modified"], "state": "active",
               "resource_type": None, "url_type": None}
        special = self._special()
        if special is None or special in ("redirect", "slow", "flaky"):
            self._file_resource(res, path, special)
        else:
            getattr(self, f"_{special}")(res, ds, path)
        return res

    def _special(self) -> str | None:
        x = self.rng.random()
        for name, share in SPECIAL:
            if x < share:
                return name
            x -= share
        return None

    def _file_resource(self, res: dict[str, Any], path: str, prefix: str | None) -> None:
        rng = self.rng
        size = rng.randint(64, self.spec.max_file_bytes)
        self.files[path] = size
        if prefix:
            res["url"] = f"{BASE}/{prefix}{path}"
        roll = rng.random()
        if roll < 0.75:
            res["size"] = size
        elif roll < 0.80:
            res["size"] = size + rng.randint(1, 999)  # wrong
        elif roll < 0.82:
            res["size"] = rng.choice(("1,234 KB", "unknown", -5))  # not a byte count
        elif roll < 0.83:
            res["size"] = 10**30  # absurd
        if rng.random() < 0.10:
            res["hash"] = hashlib.sha256(content_bytes(path, size)).hexdigest()
        elif rng.random() < 0.03:
            res["hash"] = "md5:" + hashlib.md5(path.encode()).hexdigest()

    def _landing(self, res: dict[str, Any], ds: dict[str, Any], path: str) -> None:
        page = f"/pages/{ds['organization']['name']}/{ds['name']}-{res['position']}.html"
        res.update(format="HTML", mimetype="text/html", url=BASE + page, resource_type="documentation")
        links = []
        for j in range(self.rng.randint(1, 3)):
            _fmt, ext, _, _ = self.rng.choices(FILES, cum_weights=FILE_CUM)[0]
            fpath = page.replace("/pages/", "/files/").removesuffix(".html") + f"/file{j}.{ext}"
            self.files[fpath] = self.rng.randint(64, self.spec.max_file_bytes)
            links.append(fpath)
        sub = page.removesuffix(".html") + "/more.html"
        deep = page.replace("/pages/", "/files/").removesuffix(".html") + "/deep.csv"
        self.files[deep] = self.rng.randint(64, self.spec.max_file_bytes)
        self.pages[page] = {"title": ds["title"], "links": links, "sub": sub}
        self.pages[sub] = {"title": ds["title"] + " (more)", "links": [deep], "sub": None}

    def _missing(self, res: dict[str, Any], ds: dict[str, Any], path: str) -> None:
        res["url"] = BASE + path.replace("/files/", "/gone/")
        res["size"] = self.rng.randint(64, 4096)

    def _api(self, res: dict[str, Any], ds: dict[str, Any], path: str) -> None:
        res.update(format="API", mimetype="application/json", url=f"{BASE}/api/data/{ds['name']}?format=json")

    def _service(self, res: dict[str, Any], ds: dict[str, Any], path: str) -> None:
        fmt = self.rng.choice(("WMS", "Esri REST"))
        url = f"{BASE}/arcgis/rest/services/{ds['name']}/MapServer" if fmt == "Esri REST" else \
            f"{BASE}/wms?service=WMS&request=GetCapabilities&layers={ds['name']}"
        res.update(format=fmt, mimetype=None, url=url)

    def _hostile(self, res: dict[str, Any], ds: dict[str, Any], path: str) -> None:
        res.update(url=self.rng.choice(HOSTILE), size=self.rng.choice((None, 1 << 62)))

    def _make_tie_block(self) -> None:
        """A bulk re-harvest: many datasets share one ``metadata_modified`` (more than a page)."""
        if not self.spec.tie_block:
            return
        ids = self.rng.sample(sorted(self.datasets), min(self.spec.tie_block, len(self.datasets)))
        stamp = iso(SPAN_START + (self.now - SPAN_START) * 0.6)
        for did in ids:
            self.datasets[did]["metadata_modified"] = stamp

    def _add(self, ds: dict[str, Any]) -> None:
        self.datasets[ds["id"]] = ds
        self.names[ds["name"]] = ds["id"]

    # --------------------------------------------------------------- indexes

    def reindex(self) -> None:
        """Rebuild the ``metadata_modified`` order (ties broken by insertion, as Solr's doc order)."""
        self.order = sorted(self.datasets.values(), key=lambda d: d["metadata_modified"])
        self.keys = [d["metadata_modified"] for d in self.order]
        for org in self.orgs.values():
            org["package_count"] = 0
        for d in self.order:
            self.orgs[d["owner_org"]]["package_count"] += 1

    def between(self, lo: str | None, hi: str | None, lo_incl: bool = True, hi_incl: bool = True) -> list[Any]:
        """Datasets with ``lo <= metadata_modified <= hi`` (bounds optional), in modification order."""
        a = 0 if lo is None else (bisect.bisect_left if lo_incl else bisect.bisect_right)(self.keys, lo)
        b = len(self.keys) if hi is None else (bisect.bisect_right if hi_incl else bisect.bisect_left)(self.keys, hi)
        return self.order[a:b]

    def get(self, id_or_name: str) -> dict[str, Any] | None:
        did = id_or_name if id_or_name in self.datasets else self.names.get(id_or_name)
        return self.datasets.get(did) if did else None

    # --------------------------------------------------------------- changes

    def advance(self, *, created: int = 0, modified: int = 0, removed: int = 0,
                hours: float = 24.0) -> Changes:
        """Move the virtual clock on by ``hours`` and apply new, modified and removed datasets."""
        self.now += timedelta(hours=hours)
        out = Changes()
        live = sorted(self.datasets)
        for did in self.rng.sample(live, min(removed, len(live))):
            ds = self.datasets.pop(did)
            self.names.pop(ds["name"], None)
            self.removed.add(did)
            out.removed.append(did)
        live = sorted(self.datasets)
        for did in self.rng.sample(live, min(modified, len(live))):
            self._modify(self.datasets[did])
            out.modified.append(did)
        for _ in range(created):
            ds = self._new_dataset(self.now - timedelta(seconds=self.rng.randint(0, 3600)))
            self._add(ds)
            out.created.append(ds["id"])
        self.reindex()
        return out

    def _modify(self, ds: dict[str, Any]) -> None:
        stamp = self.now - timedelta(seconds=self.rng.randint(0, 3600))
        ds["metadata_modified"] = iso(stamp)
        change = self.rng.choice(("title", "notes", "resource", "tags"))
        if change == "title":
            ds["title"] += " (revised)"
        elif change == "notes":
            ds["notes"] += " Updated methodology."
        elif change == "tags":
            revised = {"id": _tag_id("revised"), "name": "revised", "display_name": "revised", "state": "active",
                       "vocabulary_id": None}
            ds["tags"] = [*ds["tags"][1:], revised]
            ds["num_tags"] = len(ds["tags"])
        else:
            ds["resources"].append(self._resource(ds, len(ds["resources"])))
            ds["num_resources"] = len(ds["resources"])

    def render(self, text: str, base: str) -> str:
        """Fill the emulator's own base URL into serialized output."""
        return text.replace(BASE, base)


@functools.cache
def _tag_id(name: str) -> str:
    return str(uuid.UUID(hashlib.md5(name.encode()).hexdigest()))
