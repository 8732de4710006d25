"""rescue: CKAN organizations, datasets (+ history), resources, asset kinds, assets, nodes, leases, copies

Revision ID: rescue_0001
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import earthkeep.catalog.tables

revision: str = "rescue_0001"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("rescue",)
depends_on: str | Sequence[str] | None = None

UTC = earthkeep.catalog.tables.UTCDateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KINDS = (
    ("file", True, "a file downloadable as is (CSV, NetCDF, ZIP, JSON ...)"),
    ("api", True, "an API endpoint; its response is archived"),
    ("landing_page", True, "an HTML page about the data; archived and scraped for download links"),
    ("service", False, "an interactive service (WMS, ArcGIS REST, FTP ...) that cannot be archived as a file"),
)


def _pk(table: str) -> list[sa.Column | sa.PrimaryKeyConstraint]:
    return [sa.Column("id", BIGID, autoincrement=True, nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}"))]


def _fk(col: str, ref: str, table: str, ondelete: str | None = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([col], [f"{ref}.id" if "." not in ref else ref], ondelete=ondelete,
                                   name=op.f(f"fk_{table}_{col}_{ref.split('.')[0]}"))


def _catalog() -> None:
    t = "rescue_organizations"
    op.create_table(
        t, *_pk(t),
        sa.Column("portal", sa.String(300), nullable=False), sa.Column("ckan_id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False), sa.Column("title", sa.Text()),
        sa.Column("meta", JSON, nullable=False), sa.Column("first_seen_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.UniqueConstraint("portal", "ckan_id", name=op.f(f"uq_{t}_portal_ckan_id")),
    )
    op.create_index(op.f(f"ix_{t}_name"), t, ["name"])
    t = "rescue_datasets"
    op.create_table(
        t, *_pk(t),
        sa.Column("portal", sa.String(300), nullable=False), sa.Column("ckan_id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(300), nullable=False), sa.Column("title", sa.Text()),
        sa.Column("organization_id", BIGID), sa.Column("organization", sa.String(200)),
        sa.Column("tags", JSON, nullable=False), sa.Column("groups", JSON, nullable=False),
        sa.Column("metadata_modified", UTC), sa.Column("modified_raw", sa.String(40)),
        sa.Column("popularity", sa.Integer()), sa.Column("meta", JSON, nullable=False),
        sa.Column("status", sa.String(10), nullable=False), sa.Column("boost", sa.Float(), nullable=False),
        sa.Column("first_seen_at", UTC, nullable=False), sa.Column("last_seen_at", UTC, nullable=False),
        sa.Column("gone_at", UTC), sa.Column("changes", sa.Integer(), nullable=False),
        _fk("organization_id", "rescue_organizations", t, None),
        sa.UniqueConstraint("portal", "ckan_id", name=op.f(f"uq_{t}_portal_ckan_id")),
    )
    for col in ("name", "organization_id", "metadata_modified", "status"):
        op.create_index(op.f(f"ix_{t}_{col}"), t, [col])
    t = "rescue_dataset_history"
    op.create_table(
        t, *_pk(t),
        sa.Column("dataset_id", BIGID, nullable=False), sa.Column("observed_at", UTC, nullable=False),
        sa.Column("metadata_modified", UTC), sa.Column("change", sa.String(12), nullable=False),
        sa.Column("fields", JSON, nullable=False), sa.Column("run_id", sa.String(36)),
        _fk("dataset_id", "rescue_datasets", t),
    )
    op.create_index("ix_rescue_dataset_history_dataset", t, ["dataset_id", "id"])
    t = "rescue_resources"
    op.create_table(
        t, *_pk(t),
        sa.Column("dataset_id", BIGID, nullable=False), sa.Column("ckan_id", sa.String(100), nullable=False),
        sa.Column("name", sa.Text()), sa.Column("url", sa.Text(), nullable=False),
        sa.Column("format", sa.String(100)), sa.Column("mimetype", sa.String(200)),
        sa.Column("size", sa.BigInteger()), sa.Column("hash", sa.String(200)),
        sa.Column("status", sa.String(10), nullable=False), sa.Column("meta", JSON, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        _fk("dataset_id", "rescue_datasets", t),
        sa.UniqueConstraint("dataset_id", "ckan_id", name=op.f(f"uq_{t}_dataset_id_ckan_id")),
    )
    op.create_index(op.f(f"ix_{t}_dataset_id"), t, ["dataset_id"])
    t = "rescue_harvests"
    op.create_table(
        t, *_pk(t),
        sa.Column("portal", sa.String(300), nullable=False), sa.Column("scope_key", sa.String(64), nullable=False),
        sa.Column("filters", JSON, nullable=False), sa.Column("high_water", UTC),
        sa.Column("last_run_id", sa.String(36)), sa.Column("last_run_at", UTC), sa.Column("last_sweep_at", UTC),
        sa.UniqueConstraint("portal", "scope_key", name=op.f(f"uq_{t}_portal_scope_key")),
    )


def _assets() -> None:
    kinds = op.create_table(
        "rescue_asset_kinds",
        sa.Column("name", sa.String(30), nullable=False), sa.Column("downloadable", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rescue_asset_kinds")),
    )
    op.bulk_insert(kinds, [{"name": n, "downloadable": d, "description": t} for n, d, t in KINDS])
    t = "rescue_assets"
    op.create_table(
        t, *_pk(t),
        sa.Column("dataset_id", BIGID, nullable=False), sa.Column("resource_id", BIGID, nullable=False),
        sa.Column("parent_id", BIGID), sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("url", sa.Text(), nullable=False), sa.Column("url_hash", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(300), nullable=False), sa.Column("format", sa.String(100)),
        sa.Column("media_type", sa.String(200)), sa.Column("size", sa.BigInteger()),
        sa.Column("size_source", sa.String(10), nullable=False), sa.Column("size_note", sa.Text()),
        sa.Column("sha256_declared", sa.String(64)), sa.Column("state", sa.String(12), nullable=False),
        sa.Column("pool", sa.Boolean(), nullable=False), sa.Column("last_error", sa.Text()),
        sa.Column("failures", sa.Integer(), nullable=False), sa.Column("probed_at", UTC),
        sa.Column("priority", sa.Float(), nullable=False), sa.Column("boost", sa.Float(), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False), sa.Column("verified_copies", sa.Integer(), nullable=False),
        sa.Column("consensus_sha256", sa.String(64)), sa.Column("conflict", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False), sa.Column("updated_at", UTC, nullable=False),
        _fk("dataset_id", "rescue_datasets", t), _fk("resource_id", "rescue_resources", t),
        _fk("parent_id", "rescue_assets", t),
        sa.ForeignKeyConstraint(["kind"], ["rescue_asset_kinds.name"], name=op.f(f"fk_{t}_kind_rescue_asset_kinds")),
        sa.UniqueConstraint("resource_id", "url_hash", name=op.f(f"uq_{t}_resource_id_url_hash")),
    )
    op.create_index(op.f(f"ix_{t}_dataset_id"), t, ["dataset_id"])
    op.create_index("ix_rescue_assets_pool", t, [sa.text("priority DESC"), "id"],
                    sqlite_where=sa.text("pool"), postgresql_where=sa.text("pool"))


def _nodes() -> None:
    t = "rescue_nodes"
    op.create_table(
        t, *_pk(t),
        sa.Column("name", sa.String(200), nullable=False), sa.Column("api_key_id", sa.String(36), nullable=False),
        sa.Column("capacity_bytes", sa.BigInteger(), nullable=False),
        sa.Column("free_bytes", sa.BigInteger(), nullable=False), sa.Column("meta", JSON, nullable=False),
        sa.Column("registered_at", UTC, nullable=False), sa.Column("last_seen_at", UTC, nullable=False),
        sa.UniqueConstraint("api_key_id", name=op.f(f"uq_{t}_api_key_id")),
    )
    t = "rescue_allocations"
    op.create_table(
        t, *_pk(t),
        sa.Column("asset_id", BIGID, nullable=False), sa.Column("node_id", BIGID, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("reserved_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTC, nullable=False), sa.Column("heartbeat_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False), sa.Column("finished_at", UTC), sa.Column("reason", sa.Text()),
        _fk("asset_id", "rescue_assets", t), _fk("node_id", "rescue_nodes", t),
        sa.UniqueConstraint("asset_id", "node_id", name=op.f(f"uq_{t}_asset_id_node_id")),
    )
    op.create_index("ix_rescue_allocations_node_status", t, ["node_id", "status"])
    op.create_index("ix_rescue_allocations_expiry", t, ["expires_at"],
                    sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))
    t = "rescue_copies"
    op.create_table(
        t, *_pk(t),
        sa.Column("node_id", BIGID, nullable=False), sa.Column("asset_id", BIGID, nullable=False),
        sa.Column("allocation_id", sa.BigInteger()), sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False), sa.Column("state", sa.String(12), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False), sa.Column("disagreement", sa.Boolean(), nullable=False),
        sa.Column("location", sa.Text()), sa.Column("reported_at", UTC, nullable=False),
        sa.Column("verified_at", UTC),
        _fk("node_id", "rescue_nodes", t), _fk("asset_id", "rescue_assets", t),
        sa.UniqueConstraint("node_id", "asset_id", name=op.f(f"uq_{t}_node_id_asset_id")),
    )
    op.create_index(op.f(f"ix_{t}_asset_id"), t, ["asset_id"])


def upgrade() -> None:
    _catalog()
    _assets()
    _nodes()


def downgrade() -> None:
    for t in ("rescue_copies", "rescue_allocations", "rescue_nodes", "rescue_assets", "rescue_asset_kinds",
              "rescue_harvests", "rescue_resources", "rescue_dataset_history", "rescue_datasets",
              "rescue_organizations"):
        op.drop_table(t)
