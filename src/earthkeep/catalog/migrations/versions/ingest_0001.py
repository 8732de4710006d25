"""ingest: stations, observations (monthly partitions on PostgreSQL), hourly rollup, dead letters, stats

Revision ID: ingest_0001
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import earthkeep.catalog.tables

revision: str = "ingest_0001"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("ingest",)
depends_on: str | Sequence[str] | None = None

MEASURES = ("temperature", "humidity", "pressure", "wind_speed", "wind_direction", "precipitation")
UTC = earthkeep.catalog.tables.UTCDateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

PG_OBSERVATIONS = """
CREATE TABLE ingest_observations (
    station_id varchar(64) NOT NULL,
    ts timestamptz NOT NULL,
    {measures},
    CONSTRAINT pk_ingest_observations PRIMARY KEY (station_id, ts)
){partitioning}
"""


def _timescaledb() -> bool:
    bind = op.get_bind()
    return bind.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").first() is not None


def _observations() -> None:
    if op.get_bind().dialect.name == "postgresql":
        measures = ",\n    ".join(f"{m} double precision" for m in MEASURES)
        hyper = _timescaledb()
        op.execute(PG_OBSERVATIONS.format(measures=measures, partitioning="" if hyper else " PARTITION BY RANGE (ts)"))
        if hyper:  # TimescaleDB present: a hypertable with monthly chunks instead of native partitions
            op.execute("SELECT create_hypertable('ingest_observations', 'ts', "
                       "chunk_time_interval => interval '1 month')")
        return
    op.create_table(
        "ingest_observations",
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("ts", UTC, nullable=False),
        *[sa.Column(m, sa.Float(), nullable=True) for m in MEASURES],
        sa.PrimaryKeyConstraint("station_id", "ts", name=op.f("pk_ingest_observations")),
    )


def _rollup_columns() -> list[sa.Column]:
    cols = []
    for m in MEASURES:
        cols += [sa.Column(f"{m}_min", sa.Float()), sa.Column(f"{m}_max", sa.Float()),
                 sa.Column(f"{m}_sum", sa.Float(), nullable=False, server_default=sa.text("0")),
                 sa.Column(f"{m}_count", sa.Integer(), nullable=False, server_default=sa.text("0"))]
    return cols


def upgrade() -> None:
    op.create_table(
        "ingest_stations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.Column("elevation", sa.Float(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_stations")),
    )
    _observations()
    op.create_table(
        "ingest_hourly",
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("hour", UTC, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False, server_default=sa.text("0")),
        *_rollup_columns(),
        sa.PrimaryKeyConstraint("station_id", "hour", name=op.f("pk_ingest_hourly")),
    )
    op.create_table(
        "ingest_dead_letters",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("station_id", sa.String(200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("record", JSON, nullable=True),
        sa.Column("trace_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_dead_letters")),
    )
    op.create_index("ix_ingest_dead_letters_received_at", "ingest_dead_letters", ["received_at"])
    op.create_table(
        "ingest_consumer_stats",
        sa.Column("instance", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        *[sa.Column(c, sa.BigInteger(), nullable=False) for c in
          ("received", "dropped_memory", "dropped_db", "inserted", "dead_letters", "failed_batches")],
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("instance", name=op.f("pk_ingest_consumer_stats")),
    )


def downgrade() -> None:
    for table in ("ingest_consumer_stats", "ingest_dead_letters", "ingest_hourly", "ingest_observations",
                  "ingest_stations"):
        op.drop_table(table)
