"""GINA NRT (University of Alaska) VIIRS SDR granules: where they are listed, how they are named.

The provider is data at the top of this module: the products search URL and its
query parameters, the platforms (GINA's name, the name in the file, the
pytroll platform name, the name in the orbital elements file), the segment
groups AVO mirrors, and the SDR file-name pattern, which both formats and
parses names like ``SVM16_npp_d20190422_t1828348_e1829590_b38780_c20190422183926285541_cspp_dev.h5``.

What happens here is planning only: :func:`search_params` builds the query,
:func:`parse_listing` turns the JSON answer into :class:`RemoteGranule` values
and refuses hostile entries, :func:`transfer_request` says what the transfer
engine must fetch. Nothing here downloads a file.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from earthkeep.errors import InvalidInput, UnsafePath
from earthkeep.store.keys import safe_key
from earthkeep.transfer.request import TransferRequest

# ------------------------------------------------------------------ provider


@dataclass(frozen=True)
class GinaSearch:
    """The GINA NRT products search: ``GET {base}{path}?{fixed}&start_date=..&...``."""

    base_url: str
    path: str
    fixed: Mapping[str, str]
    date_format: str
    sensor: str
    level: str


GINA = GinaSearch(
    base_url="https://nrt-status.gina.alaska.edu",
    path="/products.json",
    fixed={"action": "index", "commit": "Get Products", "controller": "products"},
    date_format="%Y-%m-%d",
    sensor="viirs",
    level="level1",
)
FACILITIES = ("gilmore", "uafgina")


@dataclass(frozen=True)
class Platform:
    """One satellite under its four names."""

    gina: str  # satellites[] in the search
    orig: str  # in the file name (orig_platform_name)
    name: str  # pytroll platform_name
    tle: str  # name line in the orbital elements file


PLATFORMS: dict[str, Platform] = {
    p.gina: p
    for p in (
        Platform("snpp", "npp", "Suomi-NPP", "SUOMI NPP"),
        Platform("noaa20", "j01", "NOAA-20", "NOAA 20"),
        Platform("noaa21", "j02", "NOAA-21", "NOAA 21"),
    )
}
BY_ORIG: dict[str, Platform] = {p.orig: p for p in PLATFORMS.values()}

SEGMENT_GROUPS: dict[str, tuple[str, ...]] = {
    "moderate": ("GMTCO", "SVM03", "SVM04", "SVM05", "SVM15", "SVM16"),
    "imagery": ("GITCO", "SVI01", "SVI04", "SVI05"),
    "dnb": ("GDNBO", "SVDNB"),
}
SENSOR = "viirs"
COLLECTION = "viirs-sdr"
KEY_TEMPLATE = "viirs/sdr/{date:%Y/%m/%d}/{name}"

# The SDR file name. Times are HHMMSS plus tenths of a second; the end time has no
# date (it is the start date, or the next day when the granule crosses midnight).
NAME_TEMPLATE = (
    "{segment}_{orig}_d{start:%Y%m%d}_t{start:%H%M%S}{start_tenths}_e{end:%H%M%S}{end_tenths}"
    "_b{orbit:05d}_c{created:%Y%m%d%H%M%S%f}_{origin}.h5"
)
NAME_PATTERN = re.compile(
    r"^(?P<segment>[A-Z][A-Z0-9]{4})_(?P<orig>[a-z][a-z0-9]{2})"
    r"_d(?P<date>\d{8})_t(?P<start>\d{7})_e(?P<end>\d{7})_b(?P<orbit>\d{5,6})"
    r"_c(?P<created>\d{20})_(?P<origin>[a-z0-9]+(?:_[a-z0-9]+)*)\.h5$"
)

# ------------------------------------------------------------------ names


@dataclass(frozen=True)
class SdrName:
    """What a VIIRS SDR file name says (times are naive UTC, as in posttroll messages)."""

    segment: str
    orig_platform_name: str
    start_time: datetime
    end_time: datetime
    orbit_number: int
    proctime: datetime
    origin: str = "cspp_dev"

    @property
    def platform(self) -> Platform | None:
        return BY_ORIG.get(self.orig_platform_name)

    @property
    def platform_name(self) -> str:
        p = self.platform
        return p.name if p else self.orig_platform_name

    def format(self) -> str:
        """The file name (inverse of :func:`parse_sdr_name`)."""
        return NAME_TEMPLATE.format(
            segment=self.segment, orig=self.orig_platform_name, start=self.start_time,
            start_tenths=self.start_time.microsecond // 100_000, end=self.end_time,
            end_tenths=self.end_time.microsecond // 100_000, orbit=self.orbit_number,
            created=self.proctime, origin=self.origin,
        )


def check_name(name: str) -> str:
    """Refuse names that could leave a directory: separators, ``..``, NUL, control characters."""
    if not name or "\x00" in name or any(ord(c) < 32 for c in name):
        raise UnsafePath(f"granule name {name!r} is empty or has a control character")
    if "/" in name or "\\" in name or name in (".", "..") or ".." in name:
        raise UnsafePath(f"granule name {name!r} contains a path separator or '..'")
    return name


def parse_sdr_name(name: str) -> SdrName:
    """Parse a VIIRS SDR file name, or raise :class:`UnsafePath` / :class:`InvalidInput`."""
    check_name(name)
    m = NAME_PATTERN.match(name)
    if m is None:
        raise InvalidInput(f"{name!r} is not a VIIRS SDR file name (expected e.g. {example_name()})")
    try:
        day = datetime.strptime(m["date"], "%Y%m%d")
        start = _clock(day, m["start"])
        end = _clock(day, m["end"])
        created = datetime.strptime(m["created"], "%Y%m%d%H%M%S%f")
    except ValueError as exc:
        raise InvalidInput(f"{name!r}: impossible date or time ({exc})") from exc
    if end < start:
        end += timedelta(days=1)
    return SdrName(m["segment"], m["orig"], start, end, int(m["orbit"]), created, m["origin"])


def _clock(day: datetime, hhmmsst: str) -> datetime:
    t = datetime.strptime(hhmmsst[:6], "%H%M%S")
    return day.replace(hour=t.hour, minute=t.minute, second=t.second, microsecond=int(hhmmsst[6]) * 100_000)


def example_name() -> str:
    return "SVM16_npp_d20190422_t1828348_e1829590_b38780_c20190422183926285541_cspp_dev.h5"


def store_key(sdr: SdrName, name: str | None = None) -> str:
    """Where a granule lives in the store."""
    return safe_key(KEY_TEMPLATE.format(date=sdr.start_time, name=name or sdr.format()))


# ------------------------------------------------------------------ search


@dataclass(frozen=True)
class Selection:
    """What one mirror run asks for: facility, platforms, segments, days back."""

    facility: str
    platforms: tuple[str, ...]
    segments: tuple[str, ...]
    backfill_days: int

    def lock_name(self) -> str:
        """The same selection never runs twice at once (see :mod:`earthkeep.granules.locks`)."""
        return f"gina:{self.facility}:{','.join(sorted(self.platforms))}:{','.join(sorted(self.segments))}"


def check_selection(sel: Selection) -> Selection:
    if sel.facility not in FACILITIES:
        raise InvalidInput(f"facility {sel.facility!r}: expected one of {', '.join(FACILITIES)}")
    unknown = [p for p in sel.platforms if p not in PLATFORMS]
    if unknown:
        raise InvalidInput(f"unknown platforms {unknown}; known: {', '.join(PLATFORMS)}")
    return sel


def search_params(sel: Selection, platform: str, now: datetime | None = None) -> list[tuple[str, str]]:
    """Query of the products search for one platform (GINA takes one ``satellites[]`` per query).

    The search takes whole days (``end_date`` included), so the window runs from the day that was
    ``backfill_days`` days (at least 1) ago to tomorrow (a clock ahead of ours): just after midnight
    it still reaches back the whole ``backfill_days``, not to the midnight just passed."""
    now = now or datetime.now(UTC)
    end = now + timedelta(days=1)
    start = now - timedelta(days=max(sel.backfill_days, 1))
    return [*GINA.fixed.items(),
            ("start_date", start.strftime(GINA.date_format)), ("end_date", end.strftime(GINA.date_format)),
            ("sensors[]", GINA.sensor), ("processing_levels[]", GINA.level),
            ("facilities[]", sel.facility), ("satellites[]", platform)]


def search_url(base_url: str | None = None) -> str:
    return (base_url or GINA.base_url).rstrip("/") + GINA.path


@dataclass(frozen=True)
class RemoteGranule:
    """One listing entry that passed every check."""

    name: str
    url: str
    md5: str | None
    size: int | None
    sdr: SdrName


@dataclass(frozen=True)
class Refused:
    """A listing entry that was not accepted, and why."""

    entry: str
    reason: str


_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")


def parse_listing(payload: Any, base_url: str) -> tuple[list[RemoteGranule], list[Refused]]:
    """Accepted and refused entries of a products-search answer (a JSON list of objects)."""
    if not isinstance(payload, list):
        raise InvalidInput("GINA products search: expected a JSON list of products")
    ok: list[RemoteGranule] = []
    refused: list[Refused] = []
    for entry in payload:
        try:
            ok.append(_entry(entry, base_url))
        except (InvalidInput, UnsafePath) as exc:
            refused.append(Refused(repr(entry)[:300], str(exc)))
    return ok, refused


def _entry(entry: Any, base_url: str) -> RemoteGranule:
    if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
        raise InvalidInput("listing entry without a 'url' string")
    url = entry["url"]
    name = _checked_name(url, base_url)
    md5 = entry.get("md5sum")
    if md5 is not None and not (isinstance(md5, str) and _MD5.match(md5)):
        raise InvalidInput(f"{name}: md5sum {md5!r} is not 32 hex digits")
    size = entry.get("size")
    if size is not None and not (isinstance(size, int) and size >= 0):
        raise InvalidInput(f"{name}: size {size!r} is not a non-negative integer")
    return RemoteGranule(name, url, md5.lower() if md5 else None, size, parse_sdr_name(name))


def _checked_name(url: str, base_url: str) -> str:
    """The file name of ``url``; the URL must be on the search's own host and path-safe."""
    if "\x00" in url or any(ord(c) < 32 for c in url):
        raise UnsafePath(f"URL {url!r} contains a NUL or control character")
    parts, base = urlsplit(url), urlsplit(base_url)
    if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
        raise UnsafePath(f"URL {url!r} is not on the products server {base.scheme}://{base.netloc}")
    path = unquote(parts.path)
    if "\x00" in path or "\\" in path or any(seg in ("..", ".") for seg in path.split("/")):
        raise UnsafePath(f"URL {url!r} has a '..' segment, backslash or NUL in its path")
    return check_name(posixpath.basename(path))


def wanted(granules: Iterable[RemoteGranule], segments: Sequence[str], orig_platforms: Sequence[str],
           skip: set[str]) -> list[RemoteGranule]:
    """Granules of the wanted segments and platforms not in ``skip``, oldest first, geolocation first."""
    seg, plat = set(segments), set(orig_platforms)
    out = {g.name: g for g in granules
           if g.sdr.segment in seg and g.sdr.orig_platform_name in plat and g.name not in skip}
    return sorted(out.values(), key=lambda g: (g.sdr.start_time, not g.sdr.segment.startswith("G"), g.name))


def transfer_request(g: RemoteGranule) -> TransferRequest:
    """What the transfer engine fetches for one granule (md5 and size verified by the engine)."""
    return TransferRequest(url=g.url, key=store_key(g.sdr, g.name), size=g.size, md5=g.md5,
                           content_type="application/x-hdf5")
