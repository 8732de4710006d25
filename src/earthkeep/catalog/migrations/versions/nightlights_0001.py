"""nightlights: areas (PostGIS geometry when available), requests, inputs, monthly results

Revision ID: nightlights_0001
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import earthkeep.catalog.tables

revision: str = "nightlights_0001"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("nightlights",)
depends_on: str | Sequence[str] | None = None

UTC = earthkeep.catalog.tables.UTCDateTime(timezone=True)
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _postgis() -> bool:
    """On PostgreSQL: create the postgis extension when the server has it; True when usable."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    if bind.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").first() is not None:
        return True
    if bind.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").first() is None:
        return False
    bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS postgis")
    return True


def _fk(name: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["area_id"], ["nl_areas.id"], name=op.f(f"fk_{name}_area_id_nl_areas"),
                                   ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "nl_areas",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("geom", sa.LargeBinary(), nullable=False),
        sa.Column("west", sa.Float(), nullable=False),
        sa.Column("south", sa.Float(), nullable=False),
        sa.Column("east", sa.Float(), nullable=False),
        sa.Column("north", sa.Float(), nullable=False),
        sa.Column("area_km2", sa.Float(), nullable=False),
        sa.Column("vertices", sa.Integer(), nullable=False),
        sa.Column("properties", JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nl_areas")),
    )
    op.create_index("ix_nl_areas_bbox", "nl_areas", ["west", "south", "east", "north"])
    if _postgis():
        op.execute("ALTER TABLE nl_areas ALTER COLUMN geom TYPE geometry(Geometry, 4326) "
                   "USING ST_SetSRID(ST_GeomFromEWKB(geom), 4326)")
        op.execute("CREATE INDEX ix_nl_areas_geom ON nl_areas USING GIST (geom)")

    op.create_table(
        "nl_requests",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("area_id", BIGID, nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("start_month", sa.String(7), nullable=False),
        sa.Column("end_month", sa.String(7), nullable=False),
        sa.Column("acquisition_job_ids", JSON, nullable=False),
        sa.Column("etl_job_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("trace_id", sa.String(64), nullable=True),
        _fk("nl_requests"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nl_requests")),
    )
    op.create_index("ix_nl_requests_area_id", "nl_requests", ["area_id"])

    op.create_table(
        "nl_inputs",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("area_id", BIGID, nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("files", JSON, nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        _fk("nl_inputs"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nl_inputs")),
        sa.UniqueConstraint("area_id", "month", "source", name=op.f("uq_nl_inputs_area_id_month_source")),
    )

    metrics = [sa.Column(c, sa.Float(), nullable=True) for c in (
        "sum_radiance", "mean_radiance", "median_radiance")]
    metrics += [sa.Column(c, sa.Float(), nullable=False) for c in ("lit_pixels", "lit_area_km2")]
    metrics += [sa.Column("lit_fraction", sa.Float(), nullable=True)]
    metrics += [sa.Column(c, sa.Float(), nullable=False) for c in ("valid_area_km2", "area_km2", "valid_fraction")]
    op.create_table(
        "nl_results",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("area_id", BIGID, nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        *metrics,
        sa.Column("mean_valid_nights", sa.Float(), nullable=True),
        sa.Column("pixels", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("composite_key", sa.String(1024), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        _fk("nl_results"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nl_results")),
        sa.UniqueConstraint("area_id", "month", name=op.f("uq_nl_results_area_id_month")),
    )


def downgrade() -> None:
    op.drop_table("nl_results")
    op.drop_table("nl_inputs")
    op.drop_index("ix_nl_requests_area_id", table_name="nl_requests")
    op.drop_table("nl_requests")
    op.drop_table("nl_areas")
