"""The catalog schema: one set of tables for SQLite and PostgreSQL.

Domain folders add their own tables to the same ``Base.metadata``; Alembic
migrations in ``catalog/migrations`` create them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; pass a timezone-aware UTC value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER PKs


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Item(Base):
    """One catalogued thing (STAC item): where and when it is valid, and its files."""

    __tablename__ = "items"
    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(100))
    item_id: Mapped[str] = mapped_column(String(300))
    start_datetime: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_datetime: Mapped[datetime | None] = mapped_column(UTCDateTime)
    west: Mapped[float | None] = mapped_column(Float)
    south: Mapped[float | None] = mapped_column(Float)
    east: Mapped[float | None] = mapped_column(Float)
    north: Mapped[float | None] = mapped_column(Float)
    geometry: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # GeoJSON footprint; None: the bbox
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    last_accessed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    assets: Mapped[list[Asset]] = relationship(
        back_populates="item", cascade="all, delete-orphan", lazy="selectin", order_by="Asset.name"
    )

    __table_args__ = (
        UniqueConstraint("collection", "item_id"),
        Index("ix_items_collection_start", "collection", "start_datetime"),
        Index("ix_items_collection_end", "collection", "end_datetime"),
    )


class Asset(Base):
    """One file of an item, held in the store under ``store_key``."""

    __tablename__ = "assets"
    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    item_pk: Mapped[int] = mapped_column(ForeignKey("items.pk", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    store_key: Mapped[str] = mapped_column(String(1024), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    media_type: Mapped[str | None] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(JSONType, default=list)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    item: Mapped[Item] = relationship(back_populates="assets")

    __table_args__ = (UniqueConstraint("item_pk", "name"),)


class Run(Base):
    """One collection run of a source: the run ledger."""

    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[str] = mapped_column(String(100), index=True)
    collection: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), index=True)  # running, completed, failed, skipped
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    records_collected: Mapped[int] = mapped_column(Integer, default=0)
    bytes_collected: Mapped[int] = mapped_column(BigInteger, default=0)
    records_failed: Mapped[int] = mapped_column(Integer, default=0)
    error_message: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    trace_id: Mapped[str | None] = mapped_column(String(64))


ACTIVE_JOB = "status IN ('pending', 'running')"


class Job(Base):
    """One unit of work in the durable queue."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(500))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    trace_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index(
            "uq_jobs_active_dedupe", "dedupe_key", unique=True,
            sqlite_where=text(ACTIVE_JOB), postgresql_where=text(ACTIVE_JOB),
        ),
        Index(
            "ix_jobs_claim", text("priority DESC"), "id",
            sqlite_where=text("status = 'pending'"), postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_jobs_status_kind", "status", "kind"),
        Index(
            "ix_jobs_lease", "lease_expires_at",
            sqlite_where=text("status = 'running'"), postgresql_where=text("status = 'running'"),
        ),
    )


class ServiceInstance(Base):
    """A running ``earthkeep serve`` process: where, which roles, and when it last said it was alive."""

    __tablename__ = "service_instances"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    roles: Mapped[list[str]] = mapped_column(JSONType, default=list)
    version: Mapped[str] = mapped_column(String(50))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ApiKey(Base):
    """An API key: only its sha256 is stored; scopes are read, ingest, node, admin."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
