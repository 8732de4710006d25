"""core: service_instances, the running `earthkeep serve` processes and their roles (heartbeats)

Revision ID: 0003
Revises: 0002
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from earthkeep.catalog.tables import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "service_instances",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("roles", JSON, nullable=False),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("seen_at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_service_instances_seen_at", "service_instances", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_service_instances_seen_at", table_name="service_instances")
    op.drop_table("service_instances")
