"""The registry of earthkeep's domains, and what the rest of earthkeep asks of them.

Each entry is the ``DOMAIN`` of a domain package (see :mod:`earthkeep.domain`
for the contract). The order is the order of the configuration reference, of
the API's routers and of the CLI's groups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from earthkeep.domain import Domain, resolve
from earthkeep.errors import NotFound
from earthkeep.forcing.domain import DOMAIN as FORCING
from earthkeep.granules.domain import DOMAIN as GRANULES
from earthkeep.ingest.domain import DOMAIN as INGEST
from earthkeep.jobs.domain import DOMAIN as DOWNLOADS
from earthkeep.nightlights.domain import DOMAIN as NIGHTLIGHTS
from earthkeep.rescue.domain import DOMAIN as RESCUE

if TYPE_CHECKING:
    from sqlalchemy import Table

    from earthkeep.config import Section
    from earthkeep.runtime import Services
    from earthkeep.scheduler import Schedule

DOMAINS: tuple[Domain[Any, Any], ...] = (NIGHTLIGHTS, GRANULES, INGEST, FORCING, RESCUE, DOWNLOADS)


def get(name: str) -> Domain[Any, Any]:
    """The domain called ``name``; :class:`NotFound` names the known ones."""
    for d in DOMAINS:
        if d.name == name:
            return d
    raise NotFound(f"no domain {name!r}; known domains: {', '.join(d.name for d in DOMAINS)}")


def settings_classes() -> list[type[Section]]:
    """The settings sections that domains add to the core ones."""
    return [cls for d in DOMAINS for cls in d.all_sections()]


def register_all(services: Services) -> None:
    """Register every domain's job kinds on ``services.registry``."""
    for d in DOMAINS:
        d.register(d.of(services))


def all_schedules(services: Services) -> list[Schedule]:
    out: list[Schedule] = []
    for d in DOMAINS:
        if d.schedules is not None:
            out.extend(d.schedules(d.of(services)))
    return out


def on_startup_all(services: Services) -> None:
    """Start-up work of the domains (e.g. forcing: check history, fill gaps, collect the latest)."""
    for d in DOMAINS:
        if d.on_startup is not None:
            d.on_startup(d.of(services))


def tables() -> list[Table]:
    """Every domain's tables, in declaration order (importing their modules adds them to the catalog metadata)."""
    import importlib

    from sqlalchemy import Table

    out: list[Table] = []
    for d in DOMAINS:
        for name in d.tables:
            module = importlib.import_module(name)
            for value in vars(module).values():
                if isinstance(value, type) and value.__module__ == name:
                    value = getattr(value, "__table__", None)
                if isinstance(value, Table) and value not in out:
                    out.append(value)
    return out


def routers() -> list[Any]:
    """API routers of the domains (called by the API layer only)."""
    return [resolve(d.router) for d in DOMAINS if d.router]


def cli_commands() -> list[tuple[str, Any]]:
    """``(name, typer group or command function)`` of every domain (called by the CLI only)."""
    return [(name, resolve(target)) for d in DOMAINS for name, target in d.cli.items()]
