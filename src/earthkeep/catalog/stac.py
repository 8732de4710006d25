"""Catalog items as STAC 1.0 items (pure mapping, no I/O)."""

from __future__ import annotations

from typing import Any

from earthkeep.catalog.tables import Item

STAC_VERSION = "1.0.0"


def _iso(dt: Any) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt is not None else None


def item_to_stac(item: Item, base_url: str) -> dict[str, Any]:
    """One item as a STAC Feature; assets link to the API's download route."""
    bbox = [item.west, item.south, item.east, item.north] if item.west is not None else None
    geometry = None
    if bbox is not None:
        w, s, e, n = bbox
        geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    props: dict[str, Any] = {**(item.properties or {})}
    start, end = _iso(item.start_datetime), _iso(item.end_datetime)
    props.update({"datetime": start if start == end else None, "start_datetime": start, "end_datetime": end,
                  "created": _iso(item.created_at), "updated": _iso(item.updated_at)})
    href = f"{base_url}/items/{item.collection}/{item.item_id}"
    assets = {
        a.name: {"href": f"{href}/assets/{a.name}", "type": a.media_type, "roles": a.roles,
                 "file:size": a.size, **({"file:checksum": "1220" + a.sha256} if a.sha256 else {})}
        for a in item.assets
    }
    return {
        "type": "Feature", "stac_version": STAC_VERSION,
        "stac_extensions": ["https://stac-extensions.github.io/file/v2.1.0/schema.json"],
        "id": item.item_id, "collection": item.collection, "geometry": geometry, "bbox": bbox,
        "properties": props, "assets": assets,
        "links": [{"rel": "self", "href": f"{base_url}/stac/collections/{item.collection}/items/{item.item_id}"},
                  {"rel": "collection", "href": f"{base_url}/stac/collections/{item.collection}"}],
    }


def collection_to_stac(name: str, count: int, extent: dict[str, Any], base_url: str) -> dict[str, Any]:
    return {
        "type": "Collection", "stac_version": STAC_VERSION, "id": name, "description": f"earthkeep {name}",
        "license": "various", "extent": extent, "summaries": {"earthkeep:items": count},
        "links": [{"rel": "items", "href": f"{base_url}/stac/collections/{name}/items"},
                  {"rel": "self", "href": f"{base_url}/stac/collections/{name}"}],
    }
