"""Alembic environment: runs on the connection that ``earthkeep.catalog.migrate`` passes in."""

from __future__ import annotations

from alembic import context

from earthkeep.catalog.schema import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("earthkeep migrations run through earthkeep.catalog.migrate.upgrade()")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
