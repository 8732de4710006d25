"""granules: message outbox, task queue, failed files, locks

Revision ID: granules_0001
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import earthkeep.catalog.tables

revision: str = "granules_0001"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("granules",)
depends_on: str | Sequence[str] | None = None

UTC = earthkeep.catalog.tables.UTCDateTime(timezone=True)
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "granule_messages",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("uid", sa.String(300), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("sent_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_granule_messages")),
    )
    op.create_index("ix_granule_messages_unsent", "granule_messages", ["id"],
                    sqlite_where=sa.text("sent_at IS NULL"), postgresql_where=sa.text("sent_at IS NULL"))
    op.create_index("ix_granule_messages_created_at", "granule_messages", ["created_at"])

    op.create_table(
        "granule_tasks",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("product", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("platform_name", sa.String(40), nullable=False),
        sa.Column("orbit_number", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(12), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("updates", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", UTC, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_granule_tasks")),
    )
    op.create_index("ix_granule_tasks_identity", "granule_tasks",
                    ["subject", "platform_name", "direction", "status", "orbit_number"])
    op.create_index("ix_granule_tasks_claim", "granule_tasks", ["status", "product", "direction", "id"])

    op.create_table(
        "granule_failures",
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("first_at", UTC, nullable=False),
        sa.Column("last_at", UTC, nullable=False),
        sa.Column("retry_after", UTC, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_granule_failures")),
    )
    op.create_table(
        "granule_locks",
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("acquired_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_granule_locks")),
    )


def downgrade() -> None:
    op.drop_table("granule_locks")
    op.drop_table("granule_failures")
    op.drop_index("ix_granule_tasks_claim", table_name="granule_tasks")
    op.drop_index("ix_granule_tasks_identity", table_name="granule_tasks")
    op.drop_table("granule_tasks")
    op.drop_index("ix_granule_messages_created_at", table_name="granule_messages")
    op.drop_index("ix_granule_messages_unsent", table_name="granule_messages")
    op.drop_table("granule_messages")
