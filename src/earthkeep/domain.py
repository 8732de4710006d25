"""The contract of a domain: what it adds to earthkeep, declared as one value.

Each domain package has a ``domain.py`` exposing ``DOMAIN = Domain(...)``;
:mod:`earthkeep.domains` lists them. A domain declares

* ``name`` and its ``settings`` section class (typed, reached as
  :attr:`DomainContext.section`), plus any further ``sections`` it adds to
  :class:`~earthkeep.config.Settings`;
* ``tables``: the modules that declare its tables on the catalog metadata
  (imported by :mod:`earthkeep.catalog.schema`, i.e. migrations);
* ``job_kinds`` (names, for docs and the CLI) and ``register(ctx)``, which
  registers their handlers on ``ctx.registry``;
* optional ``schedules(ctx)``, ``on_startup(ctx)`` and ``state(ctx)``: the
  factory of its per-process state (caches, locks, runtimes), created on first
  use of :attr:`DomainContext.state` and kept by the :class:`Services`;
* ``router`` and ``cli``: ``"module:attr"`` of its FastAPI router and of its
  typer groups or commands, imported only by the API layer and the CLI, so a
  worker never imports FastAPI.

A ``domain.py`` stays light to import: handlers, readers and their third-party
libraries (xarray, rasterio, eccodes, fastapi ...) are imported inside the hooks.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from earthkeep.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from earthkeep.config import Section, Settings
    from earthkeep.events.base import Bus
    from earthkeep.jobs.handlers import HandlerRegistry
    from earthkeep.jobs.queue import JobQueue
    from earthkeep.runtime import Services
    from earthkeep.scheduler import Schedule
    from earthkeep.store.base import Store
    from earthkeep.transfer.engine import TransferEngine

S = TypeVar("S", bound="Section")  # the domain's settings section
T = TypeVar("T")  # the domain's per-process state


def resolve(target: str) -> Any:
    """The object named by ``"package.module:attr"`` (imported now)."""
    module, _, attr = target.partition(":")
    if not attr:
        raise ConfigError(f"{target!r} is not of the form 'package.module:attr'")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True, eq=False)
class Domain(Generic[S, T]):
    """One domain's declaration (see the module docstring)."""

    name: str
    register: Callable[[DomainContext[S, T]], None]
    settings: type[S] | None = None
    sections: tuple[type[Section], ...] = ()
    tables: tuple[str, ...] = ()
    job_kinds: tuple[str, ...] = ()
    schedules: Callable[[DomainContext[S, T]], list[Schedule]] | None = None
    on_startup: Callable[[DomainContext[S, T]], object] | None = None
    state: Callable[[DomainContext[S, T]], T] | None = None
    router: str | None = None
    cli: Mapping[str, str] = field(default_factory=dict)

    def all_sections(self) -> tuple[type[Section], ...]:
        """Its own section first, then the further ones."""
        own = (self.settings,) if self.settings is not None else ()
        return (*own, *self.sections)

    def of(self, services: Services) -> DomainContext[S, T]:
        """This domain's view of ``services`` (typed settings and state)."""
        return DomainContext(self, services)


@dataclass(frozen=True, eq=False)
class DomainContext(Generic[S, T]):
    """What a domain gets from the process: its settings and state, and the shared adapters."""

    domain: Domain[S, T]
    services: Services

    @property
    def section(self) -> S:
        """The domain's own settings section (``services.use_settings`` overrides it)."""
        cls = self.domain.settings
        if cls is None:
            raise ConfigError(f"domain {self.domain.name!r} declares no settings section")
        return self.services.settings.of(cls)

    @property
    def state(self) -> T:
        """The domain's state in this process, made by its ``state`` factory on first use."""
        factory = self.domain.state
        if factory is None:
            raise TypeError(f"domain {self.domain.name!r} declares no state")
        return self.services.domain_state(self.domain.name, lambda: factory(self))

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def bus(self) -> Bus:
        return self.services.bus

    @property
    def engine(self) -> Engine:
        return self.services.engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.services.sessions

    @property
    def registry(self) -> HandlerRegistry:
        return self.services.registry

    @property
    def queue(self) -> JobQueue:
        return self.services.queue

    def transfer(self) -> TransferEngine:
        """A new transfer engine on the store (use ``async with``)."""
        return self.services.transfer()  # type: ignore[no-any-return]  # Services.transfer is untyped
