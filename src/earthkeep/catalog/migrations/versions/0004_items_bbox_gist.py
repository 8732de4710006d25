"""core: a GiST index on the items' bbox (PostgreSQL), so bbox searches and their counts read the index

The bbox stays in four float columns (portable, what SQLite keeps); on PostgreSQL the index is on the
expression ``box(point(west, south), point(east, north))`` that ``catalog.items`` adds to a bbox filter.

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX IF NOT EXISTS ix_items_bbox_gist ON items "
                   "USING gist (box(point(west, south), point(east, north)))")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_items_bbox_gist")
