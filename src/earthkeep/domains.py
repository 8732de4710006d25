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
    from earthkeep.config import Settings
    from earthkeep.runtime import Services
    from earthkeep.scheduler import Schedule


@dataclass(frozen=True)
class Domain:
    name: str
    module: str
    router: str | None = None


DOMAINS: tuple[Domain, ...] = (
    Domain("downloads", "earthkeep.sources.http"),
)


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


def routers() -> list[Any]:
    """API routers of the domains (called by the API layer only)."""
    return [importlib.import_module(d.router).router for d in DOMAINS if d.router]
