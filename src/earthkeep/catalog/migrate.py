"""Run Alembic migrations programmatically (``earthkeep db upgrade`` and service start)."""

from __future__ import annotations

from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from earthkeep.catalog.db import translate_errors
from earthkeep.errors import SourceUnavailable

log = structlog.get_logger(__name__)
_HERE = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    return cfg


def head_revision() -> str:
    """The revisions the code expects, comma-joined (each domain is its own branch off ``0001``)."""
    return ",".join(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def current_revision(engine: Engine) -> str:
    with translate_errors("catalog migration"), engine.connect() as conn:
        return ",".join(sorted(MigrationContext.configure(conn).get_current_heads()))


def upgrade(engine: Engine, revision: str = "heads") -> str:
    """Bring the schema to ``revision`` (all domain heads by default); safe at every start.

    The core tables are revision ``0001``; each domain adds a branch of its own
    (``down_revision = "0001"``, ``branch_labels = ("<domain>",)``), so domains
    can evolve their tables independently.
    """
    before = current_revision(engine)
    cfg = alembic_config()
    with translate_errors("catalog migration"), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    rev = current_revision(engine)
    if rev != before:
        log.info("catalog.migrated", revision=rev, previous=before or None)
    return rev


class CatalogNotReady(SourceUnavailable):
    """The catalog has no schema yet, or an older one than this code needs."""


def require_current(engine: Engine, where: str) -> None:
    """Raise :class:`CatalogNotReady` unless the schema is at the code's heads (read-only commands)."""
    current = current_revision(engine)
    if not current:
        raise CatalogNotReady(f"the catalog {where} has no tables yet: run `earthkeep db upgrade` "
                              "(or start `earthkeep serve`) first")
    if set(current.split(",")) != set(head_revision().split(",")):
        raise CatalogNotReady(f"the catalog {where} is at revision {current}, this earthkeep needs "
                              f"{head_revision()}: run `earthkeep db upgrade`")


def downgrade(engine: Engine, revision: str) -> None:
    cfg = alembic_config()
    with translate_errors("catalog migration"), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
