"""forcing: aggregator_datasets, aggregator_collection_status (the seed's columns), forcing_claims

Revision ID: forcing_0001
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import earthkeep.catalog.tables

revision: str = "forcing_0001"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("forcing",)
depends_on: str | Sequence[str] | None = None

UTC = earthkeep.catalog.tables.UTCDateTime(timezone=True)
UUID = sa.Uuid(as_uuid=False).with_variant(sa.String(36), "sqlite")
TIMESTAMP = sa.DateTime(timezone=False)  # the seed's TIMESTAMP, holding UTC


def upgrade() -> None:
    op.create_table(
        "aggregator_datasets",
        sa.Column("id", UUID, nullable=False),
        sa.Column("data_type", sa.String(50), nullable=True),
        sa.Column("source", sa.String(50), nullable=True),
        sa.Column("forecast_date", TIMESTAMP, nullable=True),
        sa.Column("forecast_cycle", sa.String(10), nullable=True),
        sa.Column("valid_time_start", TIMESTAMP, nullable=True),
        sa.Column("valid_time_end", TIMESTAMP, nullable=True),
        sa.Column("file_path", sa.String(500), nullable=True),
        sa.Column("file_size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("is_forecast", sa.Boolean(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=True),
        sa.Column("last_accessed_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aggregator_datasets")),
    )
    op.create_index("uq_aggregator_datasets_file_path", "aggregator_datasets", ["file_path"], unique=True)
    op.create_index("ix_aggregator_datasets_type_valid", "aggregator_datasets", ["data_type", "valid_time_start"])
    op.create_table(
        "aggregator_collection_status",
        sa.Column("collection_id", UUID, nullable=False),
        sa.Column("data_type", sa.String(50), nullable=True),
        sa.Column("status", sa.String(20), nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("completed_at", TIMESTAMP, nullable=True),
        sa.Column("records_collected", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("collection_id", name=op.f("pk_aggregator_collection_status")),
    )
    op.create_index("ix_aggregator_collection_status_started", "aggregator_collection_status",
                    ["data_type", "started_at"])
    op.create_table(
        "forcing_claims",
        sa.Column("file_id", sa.String(300), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("expires_at", UTC, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("file_id", name=op.f("pk_forcing_claims")),
    )


def downgrade() -> None:
    op.drop_table("forcing_claims")
    op.drop_index("ix_aggregator_collection_status_started", table_name="aggregator_collection_status")
    op.drop_table("aggregator_collection_status")
    op.drop_index("ix_aggregator_datasets_type_valid", table_name="aggregator_datasets")
    op.drop_index("uq_aggregator_datasets_file_path", table_name="aggregator_datasets")
    op.drop_table("aggregator_datasets")
