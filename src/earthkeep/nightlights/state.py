"""The nightlights domain's job kind names and per-process state, below its handlers and its declaration.

The handlers, the processing and the tiles reach the state with :func:`state`;
:mod:`earthkeep.nightlights.domain` declares it (``Domain.state``). Both find
the same object: the services keep one per domain name.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from earthkeep.raster.zonal import WeightCache
    from earthkeep.runtime import Services

NAME = "nightlights"
LAADS = "laads_download"
EARTH_ENGINE = "earth_engine_export"
ETL = "etl_processing"
SWEEP = "nightlights_sweep"


@dataclass
class NightlightsState:
    """What one process keeps between jobs and requests.

    ``weights``: areas' coverage weights (made on first use by the processing);
    ``cogs``: the last few composites' COG bytes, for tiles; ``tile_locks``: one
    lock (and its number of users) per raw tile being fetched, so concurrent jobs
    fetch each tile once; ``locked_sessions``: the session factory of
    :func:`earthkeep.nightlights.requests.locked`.
    """

    weights: WeightCache | None = None
    cogs: OrderedDict[str, tuple[Any, bytes]] = field(default_factory=OrderedDict)
    tile_locks: dict[str, list[Any]] = field(default_factory=dict)
    locked_sessions: sessionmaker[Session] | None = None


def state(services: Services) -> NightlightsState:
    """This process's nightlights state (made on first use)."""
    return services.domain_state(NAME, NightlightsState)
