"""The area catalogue: create, read, list, update, delete (sessions passed in)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shapely.geometry import mapping
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from earthkeep.catalog.bbox import check_bbox
from earthkeep.catalog.tables import utcnow
from earthkeep.errors import InvalidInput, NotFound
from earthkeep.nightlights.geometry import Limits, ParsedArea
from earthkeep.nightlights.settings import NightlightsSettings
from earthkeep.nightlights.tables import Area, Input, Request, Result


def limits(settings: NightlightsSettings) -> Limits:
    return Limits(max_vertices=settings.max_vertices, max_area_km2=settings.max_area_km2)


def _apply(area: Area, parsed: ParsedArea) -> None:
    area.geom = parsed.geometry
    area.west, area.south, area.east, area.north = parsed.bbox
    area.area_km2 = parsed.area_km2
    area.vertices = parsed.vertices


def _name(name: str | None, parsed: ParsedArea | None) -> str:
    value = (name or (parsed.name if parsed else None) or "").strip()
    if not value:
        raise InvalidInput("an area needs a name (give 'name', or a 'name' property in the GeoJSON)")
    if len(value) > 200:
        raise InvalidInput("area name longer than 200 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput("area name holds control characters (NUL, newline, ...)")
    return value


def create_area(session: Session, parsed: ParsedArea, *, name: str | None = None,
                properties: dict[str, Any] | None = None) -> Area:
    """Record a checked area."""
    area = Area(name=_name(name, parsed), properties={**parsed.properties, **(properties or {})},
                created_at=utcnow(), updated_at=utcnow())
    _apply(area, parsed)
    session.add(area)
    session.flush()
    return area


def get_area(session: Session, area_id: int) -> Area:
    area = session.get(Area, area_id)
    if area is None:
        raise NotFound(f"no area {area_id}")
    return area


def list_areas(session: Session, *, bbox: Sequence[float] | None = None, limit: int = 100,
               after: int = 0) -> list[Area]:
    """Areas by id (those whose bounding box meets ``bbox`` when given)."""
    stmt = select(Area).where(Area.id > after).order_by(Area.id).limit(limit)
    if bbox is not None:
        w, s, e, n = check_bbox(bbox)
        stmt = stmt.where(Area.west <= e, Area.east >= w, Area.south <= n, Area.north >= s)
    return list(session.scalars(stmt))


def update_area(session: Session, area_id: int, parsed: ParsedArea | None, *, name: str | None = None,
                properties: dict[str, Any] | None = None) -> tuple[Area, bool]:
    """Change name, properties and/or geometry; a new geometry drops the area's results and inputs.

    Returns the area and whether its geometry changed.
    """
    area = get_area(session, area_id)
    if name is not None or (parsed is not None and parsed.name):
        area.name = _name(name, parsed)
    if properties is not None:
        area.properties = dict(properties)
    changed = parsed is not None and not parsed.geometry.equals(area.geom)
    if changed and parsed is not None:
        _apply(area, parsed)
        session.execute(delete(Result).where(Result.area_id == area_id))
        session.execute(delete(Input).where(Input.area_id == area_id))
    area.updated_at = utcnow()
    session.flush()
    return area, changed


def delete_area(session: Session, area_id: int) -> None:
    """Remove an area with its requests, inputs and results (store objects: see ``purge_objects``)."""
    area = get_area(session, area_id)
    for table in (Result, Input, Request):
        session.execute(delete(table).where(table.area_id == area_id))
    session.delete(area)
    session.flush()


def area_feature(area: Area) -> dict[str, Any]:
    """The area as a GeoJSON Feature."""
    return {
        "type": "Feature", "id": area.id, "geometry": dict(mapping(area.geom)),
        "bbox": [area.west, area.south, area.east, area.north],
        "properties": {
            "name": area.name, "area_km2": round(area.area_km2, 3), "vertices": area.vertices,
            "created_at": area.created_at.isoformat(), "updated_at": area.updated_at.isoformat(),
            **{k: v for k, v in (area.properties or {}).items() if k != "name"},
        },
    }
