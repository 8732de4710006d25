"""Catalog items and their assets: record, find, search, touch, delete."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import shapely
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import ColumnElement, and_, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session

from earthkeep.catalog.bbox import BBox, check_bbox
from earthkeep.catalog.cursor import decode_cursor, encode_cursor
from earthkeep.catalog.tables import Asset, Item, UTCDateTime, utcnow
from earthkeep.errors import InvalidInput, NotFound

GEOJSON_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                 "GeometryCollection")
#: Sortable fields: the name callers use -> the column (``datetime`` is the start of an item's range).
SORT_FIELDS = {"datetime": "start_datetime", "start_datetime": "start_datetime", "end_datetime": "end_datetime",
               "id": "item_id", "collection": "collection"}
_NO_TIME = datetime(1, 1, 1, tzinfo=UTC)  # where items without a time sort (first ascending, last descending)
_SCAN = 500  # candidates read per round when an exact geometry test thins them out


@dataclass(frozen=True)
class AssetSpec:
    """A file of an item as a source reports it after storing it."""

    name: str
    store_key: str
    size: int
    sha256: str | None = None
    media_type: str | None = None
    roles: Sequence[str] = ("data",)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemQuery:
    """Filters of an items search; every field optional."""

    collection: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    bbox: BBox | None = None
    limit: int = 100
    cursor: str | None = None
    collections: Sequence[str] = ()
    ids: Sequence[str] = ()
    intersects: dict[str, Any] | None = None
    sortby: Sequence[tuple[str, bool]] = ()  # (field of SORT_FIELDS, descending)
    matches: Callable[[Item], bool] | None = None  # a further test of each candidate (a STAC filter)


@dataclass
class ItemPage:
    items: list[Item]
    next_cursor: str | None


def check_geometry(geometry: Any) -> BaseGeometry:
    """A GeoJSON geometry object -> a valid shapely geometry; :class:`InvalidInput` if it is not one."""
    if not isinstance(geometry, dict) or geometry.get("type") not in GEOJSON_TYPES:
        raise InvalidInput(f"a geometry must be a GeoJSON object with a type among {', '.join(GEOJSON_TYPES)}")
    try:
        geom = shape(geometry)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, shapely.errors.ShapelyError) as exc:
        raise InvalidInput(f"the {geometry['type']} geometry has bad coordinates: {exc}") from exc
    if geom.is_empty or not shapely.is_valid(geom):
        raise InvalidInput(f"the {geometry['type']} geometry is empty or invalid: {shapely.is_valid_reason(geom)}")
    return geom


def upsert_item(
    session: Session,
    *,
    collection: str,
    item_id: str,
    start: datetime | None,
    end: datetime | None,
    bbox: Sequence[float] | None = None,
    properties: dict[str, Any] | None = None,
    assets: Sequence[AssetSpec] = (),
    geometry: dict[str, Any] | BaseGeometry | None = None,
) -> Item:
    """Create or replace an item and its assets (same collection and id).

    ``geometry`` is the footprint when it is finer than ``bbox`` (GeoJSON or shapely, WGS84);
    without ``bbox`` its bounds become the bbox.
    """
    item = session.scalars(
        select(Item).where(Item.collection == collection, Item.item_id == item_id)
    ).one_or_none()
    if item is None:
        item = Item(collection=collection, item_id=item_id)
        session.add(item)
    item.start_datetime, item.end_datetime = start, end or start
    geom = check_geometry(geometry if isinstance(geometry, dict) else mapping(geometry)) if geometry else None
    item.geometry = mapping(geom) if geom is not None else None
    if bbox is None and geom is not None:
        bbox = geom.bounds
    if bbox is not None:
        item.west, item.south, item.east, item.north = check_bbox(bbox)
    item.properties = dict(properties or {})
    item.updated_at = utcnow()
    keep = {a.name for a in assets}
    item.assets[:] = [a for a in item.assets if a.name not in keep]
    session.flush()
    for spec in assets:
        item.assets.append(
            Asset(name=spec.name, store_key=spec.store_key, size=spec.size, sha256=spec.sha256,
                  media_type=spec.media_type, roles=list(spec.roles), extra=dict(spec.extra))
        )
    session.flush()
    return item


def get_item(session: Session, collection: str, item_id: str) -> Item:
    item = session.scalars(
        select(Item).where(Item.collection == collection, Item.item_id == item_id)
    ).one_or_none()
    if item is None:
        raise NotFound(f"no item {item_id!r} in collection {collection!r}")
    return item


def find_asset(session: Session, store_key: str) -> Asset | None:
    return session.scalars(select(Asset).where(Asset.store_key == store_key)).one_or_none()


def search_items(session: Session, query: ItemQuery) -> ItemPage:
    """Items matching the filters in ``sortby`` order (then catalog order), with a cursor to the next page.

    ``intersects`` is tested exactly (shapely) on each item's footprint after a bbox prefilter in SQL,
    and ``matches`` on each candidate; candidates are read in rounds until the page is full, so pages
    stay full and cursors exact.
    """
    keys = _sort_keys(query.sortby)
    stmt = select(Item).where(*_filters(query, _gist(session))).order_by(
        *[(k.desc() if desc else k.asc()) for k, desc in keys], Item.pk.asc())
    after = _decode_after(query.cursor, query.sortby)
    keep = _postfilter(query)
    batch = query.limit + 1 if keep is None else max(query.limit + 1, _SCAN)
    found: list[Item] = []
    while len(found) <= query.limit:
        rows = list(session.scalars(stmt.where(*_after(keys, after)).limit(batch)))
        found += [r for r in rows if keep is None or keep(r)]
        if len(rows) < batch:
            break
        after = _key_values(query.sortby, rows[-1])
    more = len(found) > query.limit
    found = found[: query.limit]
    nxt = _encode_after(query.sortby, found[-1]) if more else None
    return ItemPage(found, nxt)


def count_items(session: Session, query: ItemQuery) -> int:
    """How many items match ``query`` (all pages); exact for ``intersects`` and ``matches`` too."""
    if query.matches is not None:
        keep = _postfilter(query)
        rows = session.scalars(select(Item).where(*_filters(query, _gist(session)))
                               .execution_options(yield_per=_SCAN))
        return sum(1 for r in rows if keep is None or keep(r))
    if query.intersects is None:
        return int(session.scalar(select(func.count()).select_from(Item).where(*_filters(query, _gist(session))))
                   or 0)
    geom = check_geometry(query.intersects)
    rows = session.execute(select(Item.geometry, Item.west, Item.south, Item.east, Item.north)
                           .where(*_filters(query, _gist(session))))
    return sum(1 for g, w, s, e, n in rows if geom.intersects(_footprint(g, (w, s, e, n))))


def _postfilter(query: ItemQuery) -> Callable[[Item], bool] | None:
    """The tests SQL cannot do: the exact ``intersects`` and ``matches``; ``None`` if there are none."""
    geom = check_geometry(query.intersects) if query.intersects is not None else None
    matches = query.matches
    if geom is None and matches is None:
        return None
    return lambda item: (geom is None or _touches(geom, item)) and (matches is None or matches(item))


def _gist(session: Session) -> bool:
    """Whether the catalog has the bbox GiST index of migration 0004 (PostgreSQL)."""
    return session.get_bind().dialect.name == "postgresql"


def _filters(q: ItemQuery, gist: bool = False) -> list[ColumnElement[bool]]:
    names = [*([q.collection] if q.collection else []), *q.collections]
    out: list[ColumnElement[bool]] = []
    if names:
        out.append(Item.collection.in_(names))
    if q.ids:
        out.append(Item.item_id.in_(list(q.ids)))
    if q.start is not None:
        out.append(or_(Item.end_datetime >= q.start, Item.end_datetime.is_(None)))
    if q.end is not None:
        out.append(or_(Item.start_datetime <= q.end, Item.start_datetime.is_(None)))
    if q.bbox is not None:
        out.append(_overlaps(check_bbox(q.bbox), gist))
    if q.intersects is not None:
        out.append(_overlaps(check_geometry(q.intersects).bounds, gist))
    return out


def _overlaps(bbox: Sequence[float], gist: bool = False) -> ColumnElement[bool]:
    """Items whose bbox overlaps ``bbox``; a box with west > east crosses the antimeridian.

    With ``gist`` (PostgreSQL) the same test is also written as ``box && box`` on the indexed expression,
    which lets the planner read the GiST index; the column comparisons stay the exact test.
    """
    w, s, e, n = bbox
    lat = and_(Item.south <= n, Item.north >= s)
    if w <= e:
        exact = and_(Item.west <= e, Item.east >= w, lat)
        return and_(exact, _box_overlaps(w, s, e, n)) if gist else exact
    exact = and_(or_(Item.east >= w, Item.west <= e), lat)
    if not gist:
        return exact
    return and_(exact, or_(_box_overlaps(w, s, 180.0, n), _box_overlaps(-180.0, s, e, n)))


def _box_overlaps(w: float, s: float, e: float, n: float) -> ColumnElement[bool]:
    indexed = func.box(func.point(Item.west, Item.south), func.point(Item.east, Item.north))
    return indexed.op("&&")(func.box(func.point(literal(w), literal(s)), func.point(literal(e), literal(n))))


def _footprint(geometry: dict[str, Any] | None, bbox: Sequence[float | None]) -> BaseGeometry:
    if geometry:
        return shape(geometry)
    if any(v is None for v in bbox):
        return shapely.Point()  # no location: intersects nothing
    w, s, e, n = (float(v) for v in bbox)  # type: ignore[arg-type]
    if w > e:
        return shapely.MultiPolygon([box(w, s, 180, n), box(-180, s, e, n)])
    return box(w, s, e, n)


def _touches(geom: BaseGeometry, item: Item) -> bool:
    return bool(geom.intersects(_footprint(item.geometry, (item.west, item.south, item.east, item.north))))


def _sort_keys(sortby: Sequence[tuple[str, bool]]) -> list[tuple[ColumnElement[Any], bool]]:
    keys = []
    for name, desc in sortby:
        if name not in SORT_FIELDS:
            raise InvalidInput(f"cannot sort by {name!r}; sortable: {', '.join(SORT_FIELDS)}")
        col = getattr(Item, SORT_FIELDS[name])
        if SORT_FIELDS[name].endswith("datetime"):  # nullable: sort the missing ones as the earliest time
            col = func.coalesce(col, literal(_NO_TIME, UTCDateTime))
        keys.append((col, desc))
    return keys


def _key_values(sortby: Sequence[tuple[str, bool]], item: Item) -> list[Any]:
    vals: list[Any] = []
    for name, _ in sortby:
        v = getattr(item, SORT_FIELDS[name])
        vals.append((v or _NO_TIME) if SORT_FIELDS[name].endswith("datetime") else v)
    return [*vals, item.pk]


def _signature(sortby: Sequence[tuple[str, bool]]) -> str:
    return ",".join(("-" if desc else "+") + SORT_FIELDS.get(name, name) for name, desc in sortby)


def _encode_after(sortby: Sequence[tuple[str, bool]], item: Item) -> str:
    if not sortby:
        return encode_cursor({"pk": item.pk})  # the /items API's cursor, unchanged
    vals = _key_values(sortby, item)
    return encode_cursor({"s": _signature(sortby), "k": [v.isoformat() if isinstance(v, datetime) else v
                                                          for v in vals[:-1]], "pk": vals[-1]})


def _decode_after(cursor: str | None, sortby: Sequence[tuple[str, bool]]) -> list[Any] | None:
    data = decode_cursor(cursor)
    if data is None:
        return None
    try:
        pk = int(data["pk"])
        if not 0 <= pk < 2**63:
            raise ValueError("pk out of range")
        if not sortby and "s" not in data:
            return [pk]
        if data.get("s") != _signature(sortby) or len(data["k"]) != len(sortby):
            raise InvalidInput("the cursor belongs to another sort order; start again without it")
        vals = [_key_value(n, v) for (n, _), v in zip(sortby, data["k"], strict=True)]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput("cursor is not one this API returned; pass the 'next' value unchanged") from exc
    return [*vals, pk]


def _key_value(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        raise TypeError(f"cursor key {name} is not a string")
    return datetime.fromisoformat(value) if SORT_FIELDS[name].endswith("datetime") else value


def _after(keys: list[tuple[ColumnElement[Any], bool]], values: list[Any] | None) -> list[ColumnElement[bool]]:
    """Rows strictly after ``values`` in (keys..., pk) order: the keyset page predicate."""
    if values is None:
        return []
    cols = [*keys, (Item.pk, False)]
    terms = []
    for i, (col, desc) in enumerate(cols):
        equal = [c == v for (c, _), v in zip(cols[:i], values[:i], strict=True)]
        terms.append(and_(*equal, col < values[i] if desc else col > values[i]))
    return [or_(*terms)]


def touch(session: Session, item: Item) -> None:
    """Record that a file of ``item`` was served."""
    session.execute(update(Item).where(Item.pk == item.pk).values(last_accessed_at=utcnow()))


def delete_items(session: Session, items: Sequence[Item]) -> list[str]:
    """Delete items (and their asset rows); return the store keys they held."""
    keys = [a.store_key for it in items for a in it.assets]
    pks = [it.pk for it in items]
    if pks:
        session.execute(delete(Asset).where(Asset.item_pk.in_(pks)))
        session.execute(delete(Item).where(Item.pk.in_(pks)))
    return keys


@dataclass(frozen=True)
class CollectionExtent:
    """What the catalog knows of one collection: its item count, time span and bbox (None: no items have one)."""

    name: str
    count: int
    start: datetime | None
    end: datetime | None
    bbox: BBox | None


def collection_extents(session: Session, name: str | None = None) -> list[CollectionExtent]:
    """Every collection that holds items (or only ``name``), by name."""
    stmt = select(Item.collection, func.count(), func.min(Item.start_datetime), func.max(Item.end_datetime),
                  func.min(Item.west), func.min(Item.south), func.max(Item.east), func.max(Item.north)
                  ).group_by(Item.collection).order_by(Item.collection)
    if name is not None:
        stmt = stmt.where(Item.collection == name)
    out = []
    for coll, n, t0, t1, w, s, e, north in session.execute(stmt):
        out.append(CollectionExtent(coll, int(n), t0, t1, (w, s, e, north) if w is not None else None))
    return out
