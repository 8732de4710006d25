"""The whole catalog metadata: core tables plus every domain's tables.

Import this (not ``tables``) where the complete schema is needed (migrations,
tests that create tables directly).
"""

from __future__ import annotations

import earthkeep.forcing.tables
import earthkeep.granules.tables
import earthkeep.ingest.tables
import earthkeep.nightlights.tables
import earthkeep.rescue.tables  # noqa: F401
from earthkeep.catalog.tables import Base

metadata = Base.metadata

__all__ = ["metadata"]
