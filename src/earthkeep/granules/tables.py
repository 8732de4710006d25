"""Tables of the granules domain (migration ``granules_0001``).

* ``granule_messages``: the outbox. A file or dataset message is written in the
  same transaction as what it announces (the catalog item, the task), and the
  announcer publishes it afterwards; a restart never loses or repeats one.
* ``granule_tasks``: the task broker's durable queue (position = ``id``).
* ``granule_failures``: files that failed verification, with the time they may be tried again.
* ``granule_locks``: named leases so two mirrors of one selection never overlap.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from earthkeep.catalog.tables import Base, BigId, JSONType, UTCDateTime, utcnow


class GranuleMessage(Base):
    """One posttroll message to publish (``sent_at`` is set once it went out)."""

    __tablename__ = "granule_messages"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    uid: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_granule_messages_unsent", "id", sqlite_where=text("sent_at IS NULL"),
              postgresql_where=text("sent_at IS NULL")),
        Index("ix_granule_messages_created_at", "created_at"),
    )


class GranuleTask(Base):
    """One product task: identity (subject, platform_name, orbit_number within slack, direction)."""

    __tablename__ = "granule_tasks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    product: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200))
    platform_name: Mapped[str] = mapped_column(String(40))
    orbit_number: Mapped[int] = mapped_column(Integer)
    direction: Mapped[str] = mapped_column(String(12))  # ascending, descending, unknown
    status: Mapped[str] = mapped_column(String(12), default="queued")  # queued, claimed, done, failed
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updates: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    node: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_granule_tasks_identity", "subject", "platform_name", "direction", "status", "orbit_number"),
        Index("ix_granule_tasks_claim", "status", "product", "direction", "id"),
    )


class GranuleFailure(Base):
    """A file that failed (checksum, truncation, not HDF5): tried again after ``retry_after``."""

    __tablename__ = "granule_failures"
    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str] = mapped_column(Text)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retry_after: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GranuleLock(Base):
    """A named lease: held by ``owner`` until ``expires_at`` unless renewed."""

    __tablename__ = "granule_locks"
    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
