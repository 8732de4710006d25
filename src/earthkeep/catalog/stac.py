"""Catalog items and collections as STAC 1.1 objects, and the fields extension (pure mapping, no I/O).

Stored item properties are the domains' own names (``source``, ``data_type``, ``tile`` ...). In STAC
every one of them is namespaced (``earthkeep:source``...), so none can collide with STAC's common
fields (``data_type`` is one in STAC 1.1); names that already carry a prefix (``x:y``) are kept.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from earthkeep.catalog.tables import Item

STAC_VERSION = "1.1.0"
FILE_EXTENSION = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
GEOJSON = "application/geo+json"
#: Stored property -> STAC property where plain prefixing would say less.
RENAMED = {"data_type": "earthkeep:kind"}
#: What ``fields`` given empty returns (STAC API fields extension).
DEFAULT_FIELDS = ("type", "stac_version", "id", "geometry", "bbox", "links", "assets", "properties.datetime")
#: Kept with any ``include`` so that a reduced item still says what it is and where it lives.
ALWAYS = ("type", "id", "collection", "links")


@dataclass(frozen=True)
class Fields:
    """The fields extension: dotted paths to keep (``include``) and to drop (``exclude``).

    ``include=None`` (not given) keeps the whole item, less ``exclude`` (the defaults if that is
    empty too); an empty ``include`` keeps the defaults; a non-empty one keeps those paths and
    :data:`ALWAYS`.
    """

    include: Sequence[str] | None = None
    exclude: Sequence[str] = ()


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt is not None else None


def stac_property(name: str) -> str:
    """The STAC name of a stored property: ``earthkeep:<name>`` unless renamed or already prefixed."""
    return RENAMED.get(name) or (name if ":" in name else f"earthkeep:{name}")


def _seg(value: str) -> str:
    return quote(value, safe="")


def item_href(base_url: str, collection: str, item_id: str) -> str:
    return f"{base_url}/stac/collections/{_seg(collection)}/items/{_seg(item_id)}"


def item_geometry(item: Item) -> dict[str, Any] | None:
    """The stored footprint, else the bbox as a polygon, else ``None`` (no location)."""
    if item.geometry:
        return item.geometry
    if item.west is None:
        return None
    w, s, e, n = item.west, item.south, item.east, item.north
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _times(item: Item) -> dict[str, Any]:
    """``datetime`` is the start of the item's time (its nominal time); a range adds start/end."""
    start, end = item.start_datetime, item.end_datetime
    out: dict[str, Any] = {"datetime": iso(start or end or item.created_at)}
    if start is not None and end is not None and start != end:
        out.update(start_datetime=iso(start), end_datetime=iso(end))
    out.update(created=iso(item.created_at), updated=iso(item.updated_at))
    return out


def _assets(item: Item, base_url: str) -> dict[str, Any]:
    href = f"{base_url}/items/{_seg(item.collection)}/{_seg(item.item_id)}/assets"
    out: dict[str, Any] = {}
    for a in item.assets:
        asset: dict[str, Any] = {"href": f"{href}/{_seg(a.name)}", "roles": list(a.roles or ["data"]),
                                 "file:size": a.size}
        if a.media_type:
            asset["type"] = a.media_type
        if a.sha256:
            asset["file:checksum"] = "1220" + a.sha256  # multihash: sha2-256, 32 bytes
        out[a.name] = asset
    return out


def item_to_stac(item: Item, base_url: str) -> dict[str, Any]:
    """One item as a STAC 1.1 Feature; assets link to the API's download route."""
    props = {stac_property(k): v for k, v in (item.properties or {}).items()}
    props.update(_times(item))
    coll = f"{base_url}/stac/collections/{_seg(item.collection)}"
    out: dict[str, Any] = {
        "type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": [FILE_EXTENSION],
        "id": item.item_id, "collection": item.collection, "geometry": item_geometry(item),
    }
    if item.west is not None:
        out["bbox"] = [item.west, item.south, item.east, item.north]
    out.update(properties=props, assets=_assets(item, base_url), links=[
        {"rel": "self", "href": item_href(base_url, item.collection, item.item_id), "type": GEOJSON},
        {"rel": "parent", "href": coll, "type": "application/json"},
        {"rel": "collection", "href": coll, "type": "application/json"},
        {"rel": "root", "href": f"{base_url}/stac", "type": "application/json"},
    ])
    return out


def collection_to_stac(name: str, count: int, extent: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A STAC 1.1 Collection of the items of ``name`` (``count`` is kept out of ``summaries``)."""
    href = f"{base_url}/stac/collections/{_seg(name)}"
    return {
        "type": "Collection", "stac_version": STAC_VERSION, "stac_extensions": [], "id": name,
        "title": name, "description": f"Items of the earthkeep collection {name!r}.",
        "license": "other", "extent": extent, "earthkeep:item_count": count,
        "links": [{"rel": "self", "href": href, "type": "application/json"},
                  {"rel": "root", "href": f"{base_url}/stac", "type": "application/json"},
                  {"rel": "parent", "href": f"{base_url}/stac", "type": "application/json"},
                  {"rel": "items", "href": f"{href}/items", "type": GEOJSON}],
    }


def select_fields(feature: dict[str, Any], fields: Fields | None) -> dict[str, Any]:
    """Apply the fields extension (``None`` keeps everything); see :class:`Fields`.

    A path both included and excluded is kept, and so is an included path inside an excluded one.
    """
    if fields is None:
        return feature
    explicit = list(fields.include or ())
    if fields.include is None and fields.exclude:
        out = copy.deepcopy(feature)
    else:
        out = _pick(feature, [*ALWAYS, *explicit] if explicit else list(DEFAULT_FIELDS))
    for path in fields.exclude:
        if path in explicit:
            continue
        _drop(out, path.split("."))
        _merge(out, _pick(feature, [p for p in explicit if p.startswith(path + ".")]))
    return out


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


def _pick(feature: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in paths:
        src: Any = feature
        parts = path.split(".")
        for p in parts:
            if not isinstance(src, dict) or p not in src:
                break
            src = src[p]
        else:
            dst = out
            for p in parts[:-1]:
                dst = dst.setdefault(p, {})
            dst[parts[-1]] = copy.deepcopy(src)
    return out


def _drop(obj: dict[str, Any], parts: list[str]) -> None:
    for p in parts[:-1]:
        obj = obj.get(p)  # type: ignore[assignment]
        if not isinstance(obj, dict):
            return
    obj.pop(parts[-1], None)
