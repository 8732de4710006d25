"""Catalog items and their assets: record, find, search, touch, delete."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from earthkeep.catalog.cursor import decode_cursor, encode_cursor
from earthkeep.catalog.tables import Asset, Item, utcnow
from earthkeep.errors import InvalidInput, NotFound

BBox = tuple[float, float, float, float]


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


@dataclass
class ItemPage:
    items: list[Item]
    next_cursor: str | None


def check_bbox(bbox: Sequence[float]) -> BBox:
    """Validate a ``west,south,east,north`` box in degrees."""
    if len(bbox) != 4:
        raise InvalidInput("bbox needs 4 numbers: west,south,east,north")
    w, s, e, n = (float(v) for v in bbox)
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise InvalidInput("bbox must be west,south,east,north in degrees with south <= north")
    return (w, s, e, n)


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
) -> Item:
    """Create or replace an item and its assets (same collection and id)."""
    item = session.scalars(
        select(Item).where(Item.collection == collection, Item.item_id == item_id)
    ).one_or_none()
    if item is None:
        item = Item(collection=collection, item_id=item_id)
        session.add(item)
    item.start_datetime, item.end_datetime = start, end or start
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
    """Items matching the filters in catalog order, with a cursor to the next page."""
    stmt = select(Item).order_by(Item.pk).limit(query.limit + 1)
    if query.collection:
        stmt = stmt.where(Item.collection == query.collection)
    if query.start is not None:
        stmt = stmt.where(or_(Item.end_datetime >= query.start, Item.end_datetime.is_(None)))
    if query.end is not None:
        stmt = stmt.where(or_(Item.start_datetime <= query.end, Item.start_datetime.is_(None)))
    if query.bbox is not None:
        w, s, e, n = check_bbox(query.bbox)
        stmt = stmt.where(and_(Item.west <= e, Item.east >= w, Item.south <= n, Item.north >= s))
    after = decode_cursor(query.cursor)
    if after is not None:
        stmt = stmt.where(Item.pk > int(after.get("pk", 0)))
    rows = list(session.scalars(stmt))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    nxt = encode_cursor({"pk": rows[-1].pk}) if more and rows else None
    return ItemPage(rows, nxt)


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
