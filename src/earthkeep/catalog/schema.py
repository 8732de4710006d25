"""The whole catalog metadata: core tables plus every domain's tables.

Import this (not ``tables``) where the complete schema is needed (migrations,
tests that create tables directly). The domains' tables come from their
:class:`~earthkeep.domain.Domain` declarations (:func:`earthkeep.domains.tables`).
"""

from __future__ import annotations

from earthkeep.catalog.tables import Base
from earthkeep.domains import tables

DOMAIN_TABLES = tables()
metadata = Base.metadata

__all__ = ["DOMAIN_TABLES", "metadata"]
