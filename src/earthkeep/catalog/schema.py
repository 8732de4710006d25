"""The whole catalog metadata: core tables plus every domain's tables.

Import this (not ``tables``) where the complete schema is needed (migrations,
tests that create tables directly).
"""

from __future__ import annotations

import earthkeep.forcing.tables  # noqa: F401  (registers the domain's tables)
import earthkeep.granules.tables  # noqa: F401
import earthkeep.ingest.tables  # noqa: F401
import earthkeep.nightlights.tables  # noqa: F401
import earthkeep.rescue.tables  # noqa: F401
from earthkeep.catalog.tables import Base

metadata = Base.metadata

__all__ = ["metadata"]
