"""Tables of data rescue: the CKAN catalog we keep (with history), assets, nodes, leases and copies.

Every name starts with ``rescue_`` (the core catalog already has ``assets``).

* ``rescue_organizations``, ``rescue_datasets`` (latest CKAN metadata, ``status``
  active/gone, never deleted), ``rescue_dataset_history`` (one row per observed
  change: created, modified with the changed fields, gone, returned),
  ``rescue_resources`` (CKAN resources), ``rescue_harvests`` (high-water mark of
  each portal + filter scope);
* ``rescue_asset_kinds`` (file, api, landing_page, service) and ``rescue_assets``
  (what nodes fetch: one per resource, plus links scraped from landing pages);
* ``rescue_nodes`` (one per ``node`` API key), ``rescue_allocations`` (leases;
  unique per asset and node), ``rescue_copies`` (what a node holds, its size and
  sha256, whether it agrees with the other copies).

``rescue_assets.replicas`` counts active leases plus held copies that are not in
disagreement; it only changes under the asset's row lock (see
:mod:`earthkeep.rescue.allocation`), which is what keeps allocation from ever
exceeding the target replication.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from earthkeep.catalog.tables import Base, BigId, JSONType, UTCDateTime, utcnow

ASSET_KINDS: tuple[tuple[str, bool, str], ...] = (
    ("file", True, "a file downloadable as is (CSV, NetCDF, ZIP, JSON ...)"),
    ("api", True, "an API endpoint; its response is archived"),
    ("landing_page", True, "an HTML page about the data; archived and scraped for download links"),
    ("service", False, "an interactive service (WMS, ArcGIS REST, FTP ...) that cannot be archived as a file"),
)
ALLOCATION_STATUSES = ("active", "done", "failed", "expired")
COPY_STATES = ("unconfirmed", "verified", "disagrees")


class Organization(Base):
    """A CKAN organization of one portal."""

    __tablename__ = "rescue_organizations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    portal: Mapped[str] = mapped_column(String(300))
    ckan_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200), index=True)
    title: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("portal", "ckan_id"),)


class Dataset(Base):
    """A CKAN dataset (package) as last seen, and whether it is still on the portal."""

    __tablename__ = "rescue_datasets"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    portal: Mapped[str] = mapped_column(String(300))
    ckan_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300), index=True)
    title: Mapped[str | None] = mapped_column(Text)
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("rescue_organizations.id"), index=True)
    organization: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    groups: Mapped[list[str]] = mapped_column(JSONType, default=list)
    metadata_modified: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    modified_raw: Mapped[str | None] = mapped_column(String(40))
    popularity: Mapped[int | None] = mapped_column(Integer)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(10), default="active", index=True)  # active, gone
    boost: Mapped[float] = mapped_column(Float, default=0.0)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    gone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    changes: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (UniqueConstraint("portal", "ckan_id"),)


class DatasetHistory(Base):
    """One observed change of a dataset: what changed and when."""

    __tablename__ = "rescue_dataset_history"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("rescue_datasets.id", ondelete="CASCADE"))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    metadata_modified: Mapped[datetime | None] = mapped_column(UTCDateTime)
    change: Mapped[str] = mapped_column(String(12))  # created, modified, gone, returned
    fields: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    run_id: Mapped[str | None] = mapped_column(String(36))

    __table_args__ = (Index("ix_rescue_dataset_history_dataset", "dataset_id", "id"),)


class Resource(Base):
    """A CKAN resource of a dataset."""

    __tablename__ = "rescue_resources"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("rescue_datasets.id", ondelete="CASCADE"), index=True)
    ckan_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    format: Mapped[str | None] = mapped_column(String(100))
    mimetype: Mapped[str | None] = mapped_column(String(200))
    size: Mapped[int | None] = mapped_column(BigInteger)
    hash: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="active")  # active, removed
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("dataset_id", "ckan_id"),)


class AssetKind(Base):
    """What an asset is (file, api, landing_page, service) and whether nodes can archive it."""

    __tablename__ = "rescue_asset_kinds"
    name: Mapped[str] = mapped_column(String(30), primary_key=True)
    downloadable: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(Text, default="")


class RescueAsset(Base):
    """One URL to archive: a resource's URL, or a link found on its landing page."""

    __tablename__ = "rescue_assets"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("rescue_datasets.id", ondelete="CASCADE"), index=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("rescue_resources.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("rescue_assets.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(ForeignKey("rescue_asset_kinds.name"))
    url: Mapped[str] = mapped_column(Text)
    url_hash: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(300))
    format: Mapped[str | None] = mapped_column(String(100))
    media_type: Mapped[str | None] = mapped_column(String(200))
    size: Mapped[int | None] = mapped_column(BigInteger)
    size_source: Mapped[str] = mapped_column(String(10), default="none")  # api, head, node, none
    size_note: Mapped[str | None] = mapped_column(Text)
    sha256_declared: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(12), default="new")  # new, ok, failing, refused, removed
    pool: Mapped[bool] = mapped_column(Boolean, default=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    probed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    boost: Mapped[float] = mapped_column(Float, default=0.0)
    replicas: Mapped[int] = mapped_column(Integer, default=0)
    verified_copies: Mapped[int] = mapped_column(Integer, default=0)
    consensus_sha256: Mapped[str | None] = mapped_column(String(64))
    conflict: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("resource_id", "url_hash"),
        Index("ix_rescue_assets_pool", text("priority DESC"), "id",
              sqlite_where=text("pool"), postgresql_where=text("pool")),
    )


class Node(Base):
    """A rescue node: one per ``node`` API key, with the space it reports."""

    __tablename__ = "rescue_nodes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    api_key_id: Mapped[str] = mapped_column(String(36), unique=True)
    capacity_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    free_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Allocation(Base):
    """A lease: ``node`` fetches ``asset`` until ``expires_at`` (extended by heartbeats)."""

    __tablename__ = "rescue_allocations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("rescue_assets.id", ondelete="CASCADE"))
    node_id: Mapped[int] = mapped_column(ForeignKey("rescue_nodes.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(10), default="active")
    reserved_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("asset_id", "node_id"),
        Index("ix_rescue_allocations_node_status", "node_id", "status"),
        Index("ix_rescue_allocations_expiry", "expires_at",
              sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
    )


class Copy(Base):
    """What one node holds of one asset, as it reported it, and whether the copies agree."""

    __tablename__ = "rescue_copies"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("rescue_nodes.id", ondelete="CASCADE"))
    asset_id: Mapped[int] = mapped_column(ForeignKey("rescue_assets.id", ondelete="CASCADE"), index=True)
    allocation_id: Mapped[int | None] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(12), default="unconfirmed")
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    disagreement: Mapped[bool] = mapped_column(Boolean, default=False)
    location: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("node_id", "asset_id"),)


class Harvest(Base):
    """Where discovery of one portal and filter scope got to (the high-water mark)."""

    __tablename__ = "rescue_harvests"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    portal: Mapped[str] = mapped_column(String(300))
    scope_key: Mapped[str] = mapped_column(String(64))
    filters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    high_water: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_id: Mapped[str | None] = mapped_column(String(36))
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sweep_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("portal", "scope_key"),)
