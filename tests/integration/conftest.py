"""Fixtures of the integration suites: a catalog on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from earthkeep.catalog.db import create_db_engine
from earthkeep.catalog.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A migrated, empty catalog: SQLite in tmp_path, or a fresh PostgreSQL database."""
    url = f"sqlite:///{tmp_path}/catalog.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url):
    eng = create_db_engine(db_url)
    yield eng
    eng.dispose()
