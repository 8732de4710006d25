"""From a CKAN resource to the asset a node will fetch: kind, file name, size, media type, safety.

Pure functions: no database, no network. A declared size that is not a byte
count, negative, or larger than ``max_asset_bytes`` is kept as unknown with a
note saying why; a URL that is not http(s), or whose host is a literal
loopback/private/link-local address, is refused here already (host names are
resolved and checked again when probed and when fetched).
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from earthkeep.errors import InvalidInput
from earthkeep.transfer.urls import check_url_offline

SERVICE_FORMATS = frozenset(
    {
        "WMS",
        "WFS",
        "WCS",
        "WMTS",
        "ESRI REST",
        "ARCGIS GEOSERVICES REST API",
        "ARCGIS",
        "OGC WMS",
        "OGC WFS",
        "KMZ SERVICE",
        "MAPSERVER",
    }
)
API_FORMATS = frozenset({"API", "REST", "SOAP", "OPENDAP", "ERDDAP", "JSON API", "QUERY TOOL"})
PAGE_FORMATS = frozenset({"HTML", "HTM", "WEB PAGE", "WEBPAGE", "LANDING PAGE", "TEXT/HTML"})
SERVICE_URL = re.compile(
    r"/arcgis/rest/services|[?&]service=(wms|wfs|wcs)|/(MapServer|FeatureServer|ImageServer)\b", re.I
)
FORMAT_EXTENSIONS = {
    "CSV": "csv",
    "NETCDF": "nc",
    "ZIP": "zip",
    "JSON": "json",
    "GEOJSON": "geojson",
    "XML": "xml",
    "PDF": "pdf",
    "XLSX": "xlsx",
    "XLS": "xls",
    "GEOTIFF": "tif",
    "TIFF": "tif",
    "HDF5": "h5",
    "KML": "kml",
    "TXT": "txt",
    "HTML": "html",
    "API": "json",
}
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
SHA256 = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")
PLAIN_URL = re.compile(r"(https?)://([^/?#\[\]]*)(?=[/?#]|\Z)([^?#]*)", re.I)
Parts = tuple[str, str, str]  # scheme (lower case), netloc, path


class AssetPlan(NamedTuple):
    """What to record for one URL of a resource (a named tuple: tens of thousands are made per run)."""

    url: str
    kind: str
    filename: str
    format: str | None
    media_type: str | None
    size: int | None
    size_source: str
    size_note: str | None
    sha256: str | None
    refused: str | None  # why the URL may not be fetched
    url_hash: str  # sha256 of the URL (see url_hash)


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def classify(url: str, fmt: str | None, mimetype: str | None, resource_type: str | None = None) -> str:
    """The asset kind of a resource URL: ``file``, ``api``, ``landing_page`` or ``service``."""
    return _classify(url, _split(url), (fmt or "").strip().upper(), mimetype, resource_type)


def _split(url: str) -> Parts:
    """Scheme, netloc and path as ``urlsplit`` gives them; a malformed URL (refused anyway) has none.

    Plain http(s) URLs (printable ASCII without spaces, no brackets in the host: nothing
    ``urlsplit`` would strip, normalise or refuse) are split by one regular expression, with the
    same result at a tenth of the cost.
    """
    plain = PLAIN_URL.match(url) if url.isascii() and url.isprintable() and " " not in url else None
    if plain is not None:
        return plain[1].lower(), plain[2], plain[3]
    try:
        parts = urlsplit(url)
    except ValueError:
        return "", "", ""
    return parts.scheme, parts.netloc, parts.path


def _classify(url: str, parts: Parts, f: str, mimetype: str | None, resource_type: str | None) -> str:
    low = url.lower()
    # every SERVICE_URL pattern holds "service" or "server": most URLs skip the regular expression
    if f in SERVICE_FORMATS or parts[0] == "ftp" or (("servi" in low or "server" in low) and SERVICE_URL.search(url)):
        return "service"
    path = parts[2].lower()
    if f in API_FORMATS or "/api/" in path:
        return "api"
    ext = _extension(path)
    if f in PAGE_FORMATS or (mimetype or "").lower().startswith("text/html") or ext in (".html", ".htm"):
        return "landing_page"
    if resource_type == "documentation" and ext in ("", ".aspx", ".php"):
        return "landing_page"
    return "file"


def declared_size(value: Any, max_bytes: int) -> tuple[int | None, str | None]:
    """A usable byte count from CKAN's ``size`` field, or ``(None, why not)``."""
    if value is None or value == "":
        return None, None
    if isinstance(value, bool):
        return None, f"declared size {value!r} is not a byte count"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        return None, f"declared size {str(value)[:60]!r} is not a byte count"
    if value < 0:
        return None, f"declared size {value} is negative"
    if value > max_bytes:
        return None, f"declared size {value} is implausible (over {max_bytes} bytes); treated as unknown"
    return value, None


def file_name(url: str, resource_id: str, fmt: str | None) -> str:
    """A safe file name for the bag: ``<resource id prefix>-<last path segment>``."""
    return _file_name(_split(url)[2] if "://" in url else "", resource_id, (fmt or "").strip().upper())


def _extension(path: str) -> str:
    """``posixpath.splitext(path)[1]`` without its generic code: the last dot of the last segment, not leading."""
    name = path[path.rfind("/") + 1 :]
    dot = name.rfind(".")
    return name[dot:] if dot > 0 and name[:dot].strip(".") else ""


def _file_name(path: str, resource_id: str, fmt: str) -> str:
    if "%" in path:  # decoded first: an encoded slash separates too
        path = unquote(path)
    base = SAFE_NAME.sub("_", path[path.rfind("/") + 1 :]).strip("._")[:150]  # the last segment (basename)
    if not base:
        base = "resource." + FORMAT_EXTENSIONS.get(fmt, "bin")
    if "." not in base:
        ext = FORMAT_EXTENSIONS.get(fmt)
        base = f"{base}.{ext}" if ext else base
    prefix = SAFE_NAME.sub("_", resource_id)[:8] or "r"
    return f"{prefix}-{base}"


def refusal(url: str, allow_private: bool) -> str | None:
    """Why ``url`` may not be fetched, judging only what needs no DNS (scheme, literal addresses)."""
    try:
        check_url_offline(url, allow_private)
    except InvalidInput as exc:
        return str(exc)
    return None


def _refusal(url: str, parts: Parts, allow_private: bool) -> str | None:
    """:func:`refusal`, answered from a per-host cache for URLs whose scheme and host already passed.

    Everything :func:`refusal` checks (scheme, port, host, literal address) lies in the scheme and
    netloc; only a refusal needs the whole URL (its message names it).
    """
    if parts[1] and _host_passes(parts[0], parts[1], allow_private):
        return None
    return refusal(url, allow_private)


@lru_cache(maxsize=4096)
def _host_passes(scheme: str, netloc: str, allow_private: bool) -> bool:
    return refusal(f"{scheme}://{netloc}/", allow_private) is None


def media_type(url: str, mimetype: str | None, fmt: str | None) -> str | None:
    return _media_type(_split(url)[2], mimetype, (fmt or "").strip().upper())


def _media_type(path: str, mimetype: str | None, fmt: str) -> str | None:
    if mimetype and "/" in mimetype:
        return mimetype.strip()[:200]
    guess, _ = mimetypes.guess_type(path)
    if guess:
        return guess
    ext = FORMAT_EXTENSIONS.get(fmt)
    return mimetypes.guess_type(f"x.{ext}")[0] if ext else None


def plan_resource(resource: dict[str, Any], *, max_bytes: int, allow_private: bool) -> AssetPlan:
    """The asset of one CKAN resource dict."""
    url = str(resource.get("url") or "").strip()
    fmt = str(resource.get("format") or "").strip() or None
    upper = fmt.upper() if fmt else ""
    mime = resource.get("mimetype") if isinstance(resource.get("mimetype"), str) else None
    size, note = declared_size(resource.get("size"), max_bytes)
    digest = SHA256.match(str(resource.get("hash") or "").strip())
    parts = _split(url)
    return _new_plan(AssetPlan, (  # AssetPlan(...) without the keyword handling, fields in order
        url,
        _classify(url, parts, upper, mime, resource.get("resource_type")),
        _file_name(parts[2] if "://" in url else "", str(resource.get("id") or "r"), upper),
        fmt[:100] if fmt else None,
        _media_type(parts[2], mime, upper),
        size,
        "api" if size is not None else "none",
        note,
        digest.group(1).lower() if digest else None,
        _refusal(url, parts, allow_private) if url else "resource has no URL",
        url_hash(url),
    ))


_new_plan = tuple.__new__


def plan_link(url: str, parent_filename: str, n: int) -> AssetPlan:
    """The asset of a download link found on a landing page."""
    name = file_name(url, f"{parent_filename[:8]}{n}", None)
    return AssetPlan(
        url=url,
        kind="file",
        filename=name,
        format=None,
        media_type=media_type(url, None, None),
        size=None,
        size_source="none",
        size_note=None,
        sha256=None,
        refused=None,
        url_hash=url_hash(url),
    )
