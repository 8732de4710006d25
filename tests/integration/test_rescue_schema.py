"""The rescue_0001 migration creates exactly what the table classes declare (SQLite and PostgreSQL)."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

import earthkeep.rescue.tables  # noqa: F401  (registers the tables on Base.metadata)
from earthkeep.catalog.tables import Base
from earthkeep.rescue.tables import ASSET_KINDS, AssetKind


def _rescue(diff):
    for d in diff:
        item = d[0] if isinstance(d, list) else d
        names = [getattr(x, "name", "") or "" for x in item[1:] if hasattr(x, "name")]
        table = getattr(item[1], "table", None)
        if any(n.startswith(("rescue_", "ix_rescue", "uq_rescue")) for n in names) or (
                table is not None and table.name.startswith("rescue_")):
            yield item


@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_migration_matches_the_tables(engine):
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False, "include_name": _only_rescue})
        diff = list(_rescue(compare_metadata(ctx, Base.metadata)))
    # the pool index orders by an expression (priority DESC), which autogenerate cannot compare
    assert [d for d in diff if getattr(d[1], "name", "") != "ix_rescue_assets_pool"] == []


def _only_rescue(name, type_, parent_names):
    return type_ != "table" or (name or "").startswith("rescue_")


def test_asset_kinds_are_seeded(engine):
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        kinds = {k.name: k.downloadable for k in s.scalars(select(AssetKind))}
    assert kinds == {name: ok for name, ok, _ in ASSET_KINDS}
