"""Tables of the nightlights domain: areas, requests, acquired inputs, monthly results.

Area geometries are stored as EWKB (SRID 4326). The column is ``bytea``/``BLOB``
everywhere, except on PostgreSQL with PostGIS available, where the migration
turns it into ``geometry(Geometry, 4326)`` with a GiST index; PostGIS casts
``bytea`` (EWKB) to geometry on insert and psycopg hands the geometry back as
hex EWKB, which :class:`EWKBGeometry` reads. Bounding boxes are plain columns
on every dialect, so nothing outside PostGIS-specific queries depends on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import shapely
from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from earthkeep.catalog.tables import Base, BigId, JSONType, UTCDateTime, utcnow

SRID = 4326


class EWKBGeometry(TypeDecorator[Any]):
    """A shapely geometry stored as EWKB with SRID 4326 (PostGIS geometry or plain bytes)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        return bytes(shapely.to_wkb(shapely.set_srid(value, SRID), include_srid=True))

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, str):  # PostGIS geometry read through psycopg: hex EWKB
            value = bytes.fromhex(value)
        return shapely.from_wkb(bytes(value))


class Area(Base):
    """A user-defined area of interest."""

    __tablename__ = "nl_areas"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    geom: Mapped[Any] = mapped_column(EWKBGeometry)
    west: Mapped[float] = mapped_column(Float)
    south: Mapped[float] = mapped_column(Float)
    east: Mapped[float] = mapped_column(Float)
    north: Mapped[float] = mapped_column(Float)
    area_km2: Mapped[float] = mapped_column(Float)
    vertices: Mapped[int] = mapped_column(Integer)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_nl_areas_bbox", "west", "south", "east", "north"),)


class Request(Base):
    """One ``POST /nightlights/jobs``: an area, a month range, a source, and its jobs."""

    __tablename__ = "nl_requests"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("nl_areas.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(40))
    start_month: Mapped[str] = mapped_column(String(7))
    end_month: Mapped[str] = mapped_column(String(7))
    acquisition_job_ids: Mapped[list[int]] = mapped_column(JSONType, default=list)
    etl_job_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    trace_id: Mapped[str | None] = mapped_column(String(64))


class Input(Base):
    """What an acquisition produced for an area and month: stored files, or why it failed."""

    __tablename__ = "nl_inputs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("nl_areas.id", ondelete="CASCADE"))
    month: Mapped[str] = mapped_column(String(7))
    source: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))  # ready, failed
    files: Mapped[list[str]] = mapped_column(JSONType, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("area_id", "month", "source"),)


class Result(Base):
    """Electrification metrics of one area and month (see ``docs/nightlights.md``)."""

    __tablename__ = "nl_results"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("nl_areas.id", ondelete="CASCADE"))
    month: Mapped[str] = mapped_column(String(7))
    source: Mapped[str] = mapped_column(String(40))
    sum_radiance: Mapped[float | None] = mapped_column(Float)
    mean_radiance: Mapped[float | None] = mapped_column(Float)
    median_radiance: Mapped[float | None] = mapped_column(Float)
    lit_pixels: Mapped[float] = mapped_column(Float)
    lit_area_km2: Mapped[float] = mapped_column(Float)
    lit_fraction: Mapped[float | None] = mapped_column(Float)
    valid_area_km2: Mapped[float] = mapped_column(Float)
    area_km2: Mapped[float] = mapped_column(Float)
    valid_fraction: Mapped[float] = mapped_column(Float)
    mean_valid_nights: Mapped[float | None] = mapped_column(Float)
    pixels: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[float] = mapped_column(Float)
    composite_key: Mapped[str | None] = mapped_column(String(1024))
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("area_id", "month"),)


METRIC_COLUMNS = (
    "sum_radiance", "mean_radiance", "median_radiance", "lit_pixels", "lit_area_km2", "lit_fraction",
    "valid_area_km2", "area_km2", "valid_fraction", "mean_valid_nights", "pixels",
)
