"""The domains of earthkeep, each registering its job kinds, schedules and API router.

A domain's ``module`` exposes ``register(services)`` (its job kinds) and
optionally ``schedules(settings) -> list[Schedule]``; its ``router`` module
exposes a FastAPI ``router`` and is imported by the API layer only.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from earthkeep.config import Section, Settings
    from earthkeep.runtime import Services
    from earthkeep.scheduler import Schedule


@dataclass(frozen=True)
class Domain:
    """``module`` registers job kinds; ``router`` and ``settings`` ("module:Class") are optional."""

    name: str
    module: str
    router: str | None = None
    settings: str | None = None


DOMAINS: tuple[Domain, ...] = (
    Domain("downloads", "earthkeep.jobs.fetch"),
    Domain("nightlights", "earthkeep.nightlights.handlers", router="earthkeep.api.routers.nightlights",
           settings="earthkeep.nightlights.settings:NightlightsSettings"),
    Domain("granules", "earthkeep.granules.domain", router="earthkeep.api.routers.granules",
           settings="earthkeep.granules.settings:ViirsSettings"),
    Domain("ingest", "earthkeep.ingest.domain", router="earthkeep.api.routers.ingest",
           settings="earthkeep.ingest.settings:IngestSettings"),
    Domain("forcing", "earthkeep.forcing", router="earthkeep.api.routers.forcing",
           settings="earthkeep.forcing.settings:ForcingSourcesSettings"),
    Domain("rescue", "earthkeep.rescue.domain", router="earthkeep.api.routers.rescue",
           settings="earthkeep.rescue.settings:RescueSettings"),
)


def settings_classes() -> list[type[Section]]:
    """The settings sections that domains add to the core ones."""
    out = []
    for d in DOMAINS:
        if d.settings:
            mod, _, cls = d.settings.partition(":")
            out.append(getattr(importlib.import_module(mod), cls))
    return out


def register_all(services: Services) -> None:
    for d in DOMAINS:
        importlib.import_module(d.module).register(services)


def all_schedules(settings: Settings) -> list[Schedule]:
    out: list[Schedule] = []
    for d in DOMAINS:
        fn = getattr(importlib.import_module(d.module), "schedules", None)
        if fn is not None:
            out.extend(fn(settings))
    return out


def on_startup_all(services: Services) -> None:
    """Start-up work of the domains (e.g. forcing: check history, fill gaps, collect the latest)."""
    for d in DOMAINS:
        hook = getattr(importlib.import_module(d.module), "on_startup", None)
        if hook is not None:
            hook(services)


def routers() -> list[Any]:
    """API routers of the domains (called by the API layer only)."""
    return [importlib.import_module(d.router).router for d in DOMAINS if d.router]
