"""The nightlights domain: its job kinds, schedule, settings, tables and per-process state.

The handlers (:mod:`earthkeep.nightlights.handlers`, with rasterio and h5py
behind them) are imported when the kinds are registered, not with this module;
they reach the state through :mod:`earthkeep.nightlights.state`, never through
this module, so the lazy import closes no cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from earthkeep.domain import Domain, DomainContext
from earthkeep.nightlights.settings import NightlightsSettings
from earthkeep.nightlights.state import EARTH_ENGINE, ETL, LAADS, SWEEP, NightlightsState
from earthkeep.scheduler import Schedule

if TYPE_CHECKING:

    from earthkeep.config import Settings

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
