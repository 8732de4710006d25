"""Tables of station ingest: stations, raw observations, the hourly rollup, dead letters, consumer stats.

On PostgreSQL ``ingest_observations`` is partitioned by month (see the
``ingest_0001`` migration and :mod:`earthkeep.ingest.partitions`); on SQLite it
is a plain table. The primary key (station, timestamp) is what makes every
redelivery harmless: inserts use ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from earthkeep.catalog.tables import Base, BigId, JSONType, UTCDateTime, utcnow
from earthkeep.ingest.models import MEASURE_NAMES

ROLLUP_SUFFIXES = ("min", "max", "sum", "count")


class StationRow(Base):
    """A registered station."""

    __tablename__ = "ingest_stations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    elevation: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ObservationRow(Base):
    """One raw observation; (station_id, ts) is unique."""

    __tablename__ = "ingest_observations"
    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    temperature: Mapped[float | None] = mapped_column(Float)
    humidity: Mapped[float | None] = mapped_column(Float)
    pressure: Mapped[float | None] = mapped_column(Float)
    wind_speed: Mapped[float | None] = mapped_column(Float)
    wind_direction: Mapped[float | None] = mapped_column(Float)
    precipitation: Mapped[float | None] = mapped_column(Float)


def _rollup_columns() -> list[Column[Any]]:
    cols: list[Column[Any]] = []
    for m in MEASURE_NAMES:
        cols += [Column(f"{m}_min", Float), Column(f"{m}_max", Float),
                 Column(f"{m}_sum", Float, nullable=False, server_default=text("0")),
                 Column(f"{m}_count", Integer, nullable=False, server_default=text("0"))]
    return cols


#: min/max/sum/count per measure for one station and one UTC hour, kept with every insert
hourly = Table(
    "ingest_hourly", Base.metadata,
    Column("station_id", String(64), primary_key=True),
    Column("hour", UTCDateTime, primary_key=True),
    Column("n", Integer, nullable=False, server_default=text("0")),
    *_rollup_columns(),
)
observations: Table = ObservationRow.__table__  # type: ignore[assignment]


class DeadLetter(Base):
    """A record the collector or the consumer refused, kept for inspection."""

    __tablename__ = "ingest_dead_letters"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(20))  # collector, consumer
    station_id: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    record: Mapped[Any] = mapped_column(JSONType)
    trace_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_ingest_dead_letters_received_at", "received_at"),)


class ConsumerStatsRow(Base):
    """Counters of one consumer instance (process), refreshed every few seconds."""

    __tablename__ = "ingest_consumer_stats"
    instance: Mapped[str] = mapped_column(String(200), primary_key=True)
    mode: Mapped[str] = mapped_column(String(20))
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    dropped_memory: Mapped[int] = mapped_column(BigInteger, default=0)
    dropped_db: Mapped[int] = mapped_column(BigInteger, default=0)
    inserted: Mapped[int] = mapped_column(BigInteger, default=0)
    dead_letters: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_batches: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
