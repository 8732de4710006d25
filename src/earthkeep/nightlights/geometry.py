"""Areas of interest as GeoJSON: parse, check, (optionally) repair.

Accepted: a ``Polygon`` or ``MultiPolygon`` geometry, a ``Feature`` holding one,
or a ``FeatureCollection`` of such features (unioned into one area, or one area
per feature with :func:`parse_features`). Coordinates are WGS84 longitude,
latitude in degrees (RFC 7946); a legacy ``crs`` member naming any other CRS is
refused, and so are coordinates outside [-180, 180] x [-90, 90].

Invalid geometries (self-intersections, bad rings ...) are refused with the
reason from :func:`shapely.validation.explain_validity`, unless ``repair=True``
asks for :func:`shapely.make_valid`. Limits on vertex count and geodesic area
protect the processing (settings ``NIGHTLIGHTS_MAX_VERTICES`` and
``NIGHTLIGHTS_MAX_AREA_KM2``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import shapely
from pyproj import CRS, Geod
from pyproj.exceptions import CRSError
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient
from shapely.validation import explain_validity

from earthkeep.errors import InvalidInput

POLYGONAL = ("Polygon", "MultiPolygon")
_GEOD = Geod(ellps="WGS84")
_WGS84 = CRS.from_epsg(4326)

Polygonal = Polygon | MultiPolygon


@dataclass(frozen=True)
class Limits:
    """What an area may be: at most ``max_vertices`` vertices and ``max_area_km2`` km²."""

    max_vertices: int = 20_000
    max_area_km2: float = 1_000_000.0


@dataclass
class ParsedArea:
    """A checked area: its geometry (WGS84, RFC 7946 ring order) and what was found out."""

    geometry: Polygonal
    name: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    repaired: bool = False

    @property
    def area_km2(self) -> float:
        return geodesic_area_km2(self.geometry)

    @property
    def vertices(self) -> int:
        return int(shapely.get_num_coordinates(self.geometry))

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        w, s, e, n = self.geometry.bounds
        return (w, s, e, n)

    def geojson(self) -> dict[str, Any]:
        return dict(mapping(self.geometry))


def geodesic_area_km2(geom: BaseGeometry) -> float:
    """Area on the WGS84 ellipsoid in km²."""
    area, _ = _GEOD.geometry_area_perimeter(geom)
    return abs(area) / 1e6


def load_json(data: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """A GeoJSON object from text, bytes or an already parsed dict."""
    if isinstance(data, dict):
        return data
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if b"\x00" in raw or b"\\u0000" in raw:
        raise InvalidInput("GeoJSON holds a NUL character")
    try:
        obj = json.loads(data, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"not valid JSON: {exc}") from exc
    except RecursionError:
        raise InvalidInput("not valid GeoJSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise InvalidInput("GeoJSON must be an object with a 'type' member")
    return obj


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number (RFC 8259)")


def parse_area(data: str | bytes | dict[str, Any], *, repair: bool = False,
               limits: Limits | None = None) -> ParsedArea:
    """One area from GeoJSON (a FeatureCollection becomes the union of its features)."""
    obj = load_json(data)
    features = _features(obj)
    if len(features) == 1:
        geom, props = features[0]
        return check_geometry(geom, repair=repair, limits=limits, name=_name(props), properties=props)
    unlimited = Limits(max_vertices=2**62, max_area_km2=math.inf)
    parts = []
    for i, (geom, props) in enumerate(features):
        try:
            parts.append(check_geometry(geom, repair=repair, limits=unlimited, properties=props))
        except InvalidInput as exc:
            raise InvalidInput(f"features[{i}]: {exc}") from exc
    union = shapely.union_all([p.geometry for p in parts])
    checked = check_geometry(union, limits=limits, name=_name(obj.get("properties") or {}))
    checked.repaired = any(p.repaired for p in parts)
    return checked


def parse_features(data: str | bytes | dict[str, Any], *, repair: bool = False,
                   limits: Limits | None = None) -> list[ParsedArea]:
    """One area per feature (a bare geometry or Feature gives one)."""
    obj = load_json(data)
    out = []
    for i, (geom, props) in enumerate(_features(obj)):
        try:
            out.append(check_geometry(geom, repair=repair, limits=limits, name=_name(props), properties=props))
        except InvalidInput as exc:
            raise InvalidInput(f"feature {i}: {exc}") from exc
    return out


def check_geometry(geom: BaseGeometry, *, repair: bool = False, limits: Limits | None = None,
                   name: str | None = None, properties: dict[str, Any] | None = None) -> ParsedArea:
    """Validate (or repair) a polygonal WGS84 geometry against the limits."""
    limits = limits or Limits()
    if geom.is_empty:
        raise InvalidInput("geometry is empty: an area needs at least one polygon with an exterior ring")
    geom = shapely.force_2d(geom)
    repaired = False
    if not geom.is_valid:
        reason = explain_validity(geom)
        if not repair:
            raise InvalidInput(
                f"geometry is invalid: {reason}; fix it, or ask for a repair (repair=true / --repair)"
            )
        geom = _repair(geom, reason)
        repaired = True
    _check_limits(geom, limits)
    return ParsedArea(_oriented(geom), name=name, properties=dict(properties or {}), repaired=repaired)


# ---------------------------------------------------------------- internals


def _features(obj: dict[str, Any]) -> list[tuple[BaseGeometry, dict[str, Any]]]:
    _check_crs(obj)
    kind = obj.get("type")
    if kind in POLYGONAL:
        return [(_shape(obj), {})]
    if kind == "Feature":
        return [_feature(obj)]
    if kind == "FeatureCollection":
        feats = obj.get("features")
        if not isinstance(feats, list) or not feats:
            raise InvalidInput("FeatureCollection has no features; an area needs at least one polygon")
        out = []
        for i, f in enumerate(feats):
            if not isinstance(f, dict) or f.get("type") != "Feature":
                raise InvalidInput(f"features[{i}] is not a Feature")
            _check_crs(f)
            try:
                out.append(_feature(f))
            except InvalidInput as exc:
                raise InvalidInput(f"features[{i}]: {exc}") from exc
        return out
    raise InvalidInput(
        f"GeoJSON type {kind!r} is not accepted; send a Polygon, MultiPolygon, Feature or FeatureCollection"
    )


def _feature(f: dict[str, Any]) -> tuple[BaseGeometry, dict[str, Any]]:
    geom = f.get("geometry")
    if not isinstance(geom, dict):
        raise InvalidInput("Feature has no geometry (null geometries cannot be areas)")
    _check_crs(geom)
    props = f.get("properties") or {}
    if not isinstance(props, dict):
        raise InvalidInput("Feature properties must be an object")
    return _shape(geom), props


def _shape(geom: dict[str, Any]) -> BaseGeometry:
    kind = geom.get("type")
    if kind not in POLYGONAL:
        raise InvalidInput(f"geometry type {kind!r} has no area; send a Polygon or MultiPolygon")
    coords = geom.get("coordinates")
    _check_coordinates(coords, depth=3 if kind == "Polygon" else 4)
    try:
        return shape({"type": kind, "coordinates": coords})
    except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.ShapelyError) as exc:
        raise InvalidInput(f"malformed {kind} coordinates: {exc}") from exc


def _check_coordinates(coords: Any, depth: int) -> None:
    """Every position is 2 or 3 finite numbers within WGS84 longitude/latitude bounds."""
    if depth == 1:
        if not isinstance(coords, list | tuple) or len(coords) not in (2, 3):
            raise InvalidInput(f"a position must be [longitude, latitude], got {coords!r}")
        if not all(isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c) for c in coords):
            raise InvalidInput(f"a position must hold finite numbers, got {coords!r}")
        lon, lat = coords[0], coords[1]
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise InvalidInput(
                f"coordinate ({lon}, {lat}) is outside WGS84 longitude/latitude bounds; areas must be "
                "in EPSG:4326 degrees (longitude first); reproject projected coordinates first"
            )
        return
    if not isinstance(coords, list | tuple):
        raise InvalidInput("coordinates are not nested arrays of positions")
    for c in coords:
        _check_coordinates(c, depth - 1)


def _check_crs(obj: dict[str, Any]) -> None:
    crs = obj.get("crs")
    if crs is None:
        return
    name = (crs.get("properties") or {}).get("name") if isinstance(crs, dict) else None
    if not isinstance(name, str):
        raise InvalidInput("the 'crs' member must name a CRS; omit it for WGS84 (RFC 7946)")
    try:
        ok = CRS.from_user_input(name).equals(_WGS84, ignore_axis_order=True)
    except CRSError:
        ok = False
    if not ok:
        raise InvalidInput(
            f"CRS {name!r} is not WGS84: areas must be in EPSG:4326 longitude/latitude "
            "(reproject first, e.g. ogr2ogr -t_srs EPSG:4326)"
        )


def _repair(geom: BaseGeometry, reason: str) -> Polygonal:
    fixed = shapely.make_valid(geom)
    parts = [g for g in getattr(fixed, "geoms", [fixed]) if g.geom_type in POLYGONAL and not g.is_empty]
    if not parts:
        raise InvalidInput(f"geometry is invalid ({reason}) and its repair leaves no area")
    polys = [p for g in parts for p in getattr(g, "geoms", [g])]
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def _check_limits(geom: BaseGeometry, limits: Limits) -> None:
    n = int(shapely.get_num_coordinates(geom))
    if n > limits.max_vertices:
        raise InvalidInput(
            f"geometry has {n} vertices, more than the limit of {limits.max_vertices}; simplify it "
            "(e.g. shapely simplify with a tolerance of 0.001 degrees)"
        )
    w, _, e, _ = geom.bounds
    if e - w > 180:
        raise InvalidInput(
            "geometry spans more than 180 degrees of longitude; if it crosses the antimeridian, "
            "split it at +-180 into a MultiPolygon (RFC 7946 section 3.1.9)"
        )
    km2 = geodesic_area_km2(geom)
    if km2 <= 0:
        raise InvalidInput("geometry has no area")
    if km2 > limits.max_area_km2:
        raise InvalidInput(
            f"area is {km2:,.0f} km², more than the limit of {limits.max_area_km2:,.0f} km²; "
            "split it into smaller areas"
        )


def _oriented(geom: BaseGeometry) -> Polygonal:
    if isinstance(geom, Polygon):
        return orient(geom, 1.0)
    return MultiPolygon([orient(p, 1.0) for p in geom.geoms])


def _name(props: dict[str, Any]) -> str | None:
    for key in ("name", "NAME", "Name", "title"):
        v = props.get(key)
        if isinstance(v, str) and v.strip():
            return v.strip()[:200]
    return None
