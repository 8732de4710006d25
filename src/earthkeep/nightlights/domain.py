"""The nightlights domain: its job kinds, schedule, settings, tables and per-process state.

The handlers (:mod:`earthkeep.nightlights.handlers`, with rasterio and h5py
behind them) are imported when the kinds are registered, not with this module.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from earthkeep.domain import Domain, DomainContext
from earthkeep.nightlights.settings import NightlightsSettings
from earthkeep.scheduler import Schedule

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from earthkeep.config import Settings
    from earthkeep.raster.zonal import WeightCache

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


def register(ctx: DomainContext[Any, Any]) -> None:
    from earthkeep.nightlights.handlers import register as register_handlers

    register_handlers(ctx)


def schedules(settings: Settings) -> list[Schedule]:
    """``nightlights_sweep`` every ``NIGHTLIGHTS_SWEEP_SCHEDULE`` (5 minutes by default)."""
    return [Schedule("nightlights-sweep", settings.of(NightlightsSettings).sweep_schedule, SWEEP, {})]


DOMAIN: Domain[NightlightsSettings, NightlightsState] = Domain(
    "nightlights", register, settings=NightlightsSettings, tables=("earthkeep.nightlights.tables",),
    job_kinds=(LAADS, EARTH_ENGINE, ETL, SWEEP), schedules=lambda ctx: schedules(ctx.settings),
    state=lambda ctx: NightlightsState(), router="earthkeep.api.routers.nightlights:router",
    cli={"areas": "earthkeep.cli.areas:app", "nightlights": "earthkeep.cli.nightlights:app"},
)
