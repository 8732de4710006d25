"""Download links on a landing page (selectolax): same host only, data files apart from further pages."""

from __future__ import annotations

import posixpath
from urllib.parse import urldefrag, urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

DATA_EXTENSIONS = frozenset({
    ".csv", ".tsv", ".txt", ".dat", ".json", ".geojson", ".xml", ".nc", ".nc4", ".cdf", ".h5", ".hdf", ".he5",
    ".hdf5", ".grb", ".grb2", ".grib", ".grib2", ".tif", ".tiff", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z",
    ".tar", ".zarr", ".parquet", ".shp", ".kml", ".kmz", ".gpkg", ".xls", ".xlsx", ".pdf", ".asc", ".las", ".laz",
})
PAGE_EXTENSIONS = frozenset({"", ".html", ".htm", ".php", ".asp", ".aspx", ".jsp", ".cfm", ".shtml"})
SKIP_SCHEMES = ("mailto:", "javascript:", "tel:", "data:", "#")


def extract_links(html: str, page_url: str) -> tuple[list[str], list[str]]:
    """``(data file URLs, further page URLs)`` linked from ``html``, on the page's host, in page order."""
    host = urlsplit(page_url).netloc.lower()
    files: list[str] = []
    pages: list[str] = []
    seen: set[str] = set()
    for node in LexborHTMLParser(html).css("a[href]"):
        href = (node.attributes.get("href") or "").strip()
        if not href or href.lower().startswith(SKIP_SCHEMES):
            continue
        url = urldefrag(urljoin(page_url, href))[0]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != host or url in seen or url == page_url:
            continue
        seen.add(url)
        ext = posixpath.splitext(parts.path)[1].lower()
        if ext in DATA_EXTENSIONS:
            files.append(url)
        elif ext in PAGE_EXTENSIONS:
            pages.append(url)
    return files, pages
