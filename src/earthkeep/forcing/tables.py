"""Tables of the forcing domain.

``aggregator_datasets`` and ``aggregator_collection_status`` have exactly the
columns of the Data Aggregator (UUID keys, ``TIMESTAMP`` without time zone
holding UTC) so that the services which queried them keep working. They are
kept in step with the catalog: a dataset row is written in the same transaction
as its catalog item (``file_path`` is the asset's store key) and deleted with
it; a status row is written with each entry of the run ledger (``collection_id``
is the run id).

``forcing_claims`` holds one lease per GFS/Copernicus file being downloaded, so
two collectors never fetch the same file, and remembers the last error of a
file for the gap report.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, String, Text, Uuid
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column

from earthkeep.catalog.tables import Base, UTCDateTime

UUIDText = Uuid(as_uuid=False).with_variant(String(36), "sqlite")


class NaiveUTC(UTCDateTime):
    """``TIMESTAMP`` (no time zone) holding UTC, as the seed declared it; aware datetimes in Python."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        aware = super().process_bind_param(value, dialect)
        return None if aware is None else aware.replace(tzinfo=None)


class AggregatorDataset(Base):
    """One data file available to drift models (the seed's ``aggregator_datasets``)."""

    __tablename__ = "aggregator_datasets"
    id: Mapped[str] = mapped_column(UUIDText, primary_key=True)
    data_type: Mapped[str | None] = mapped_column(String(50))
    source: Mapped[str | None] = mapped_column(String(50))
    forecast_date: Mapped[datetime | None] = mapped_column(NaiveUTC)
    forecast_cycle: Mapped[str | None] = mapped_column(String(10))
    valid_time_start: Mapped[datetime | None] = mapped_column(NaiveUTC)
    valid_time_end: Mapped[datetime | None] = mapped_column(NaiveUTC)
    file_path: Mapped[str | None] = mapped_column(String(500))
    file_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    is_forecast: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime | None] = mapped_column(NaiveUTC)
    last_accessed_at: Mapped[datetime | None] = mapped_column(NaiveUTC)

    __table_args__ = (
        Index("uq_aggregator_datasets_file_path", "file_path", unique=True),
        Index("ix_aggregator_datasets_type_valid", "data_type", "valid_time_start"),
    )


class AggregatorCollectionStatus(Base):
    """One collection run (the seed's ``aggregator_collection_status``)."""

    __tablename__ = "aggregator_collection_status"
    collection_id: Mapped[str] = mapped_column(UUIDText, primary_key=True)
    data_type: Mapped[str | None] = mapped_column(String(50))
    status: Mapped[str | None] = mapped_column(String(20))
    started_at: Mapped[datetime | None] = mapped_column(NaiveUTC)
    completed_at: Mapped[datetime | None] = mapped_column(NaiveUTC)
    records_collected: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_aggregator_collection_status_started", "data_type", "started_at"),)


class ForcingClaim(Base):
    """A lease on one file being fetched, and the last error met fetching it."""

    __tablename__ = "forcing_claims"
    file_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
