"""Wiring: build every adapter from settings once, pass the bundle down.

``Services.open`` is called by the API lifespan, ``earthkeep serve`` and the CLI;
domain code receives the pieces it needs, never globals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from earthkeep.catalog.db import create_db_engine, session_factory, translate_errors
from earthkeep.catalog.migrate import upgrade
from earthkeep.config import Section, Settings
from earthkeep.domains import get, register_all
from earthkeep.events.base import Bus
from earthkeep.events.memory import MemoryBus
from earthkeep.jobs.handlers import HandlerRegistry
from earthkeep.jobs.queue import JobQueue
from earthkeep.store.base import Store

if TYPE_CHECKING:
    from earthkeep.apikeys import KeyCache
    from earthkeep.domain import DomainContext

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass
class Services:
    """The adapters of one process: catalog engine and sessions, store, queue, bus.

    ``wake_worker`` is set by ``earthkeep serve`` when this process runs a worker
    (enqueuers call it so that work starts at once); ``api_keys`` is the API's
    cache of verified keys. A domain's own state is reached through its
    :class:`~earthkeep.domain.DomainContext` (``DOMAIN.of(services).state``).
    """

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: Store
    registry: HandlerRegistry
    queue: JobQueue
    bus: Bus
    wake_worker: Callable[[], None] | None = None
    api_keys: KeyCache | None = None
    _states: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True, store: Store | None = None) -> Services:
        """Connect lazily to everything; migrate the catalog when asked."""
        engine = create_db_engine(settings.catalog.database_url, pool_size=settings.catalog.pool_size)
        if migrate:
            upgrade(engine)
        registry = HandlerRegistry()
        queue = JobQueue(engine, registry=registry, default_max_attempts=settings.worker.max_attempts,
                         backoff_base_s=settings.worker.backoff_base_s)
        if store is None:
            from earthkeep.store.obstore import store_from_settings

            store = store_from_settings(settings.store)
        services = cls(settings, engine, session_factory(engine), store, registry, queue, MemoryBus())

        register_all(services)
        return services

    def domain(self, name: str) -> DomainContext[Any, Any]:
        """The context of the domain called ``name`` (a clear error lists the known ones)."""
        return get(name).of(self)

    def domain_state(self, name: str, factory: Callable[[], T]) -> T:
        """Domain ``name``'s state in this process, made by ``factory`` on first use.

        Reached as :attr:`DomainContext.state`, or from a domain's own modules
        through a small accessor beside the state class (e.g.
        :func:`earthkeep.nightlights.state.state`), so that they need not import
        the domain's declaration.
        """
        if name not in self._states:
            self._states.setdefault(name, factory())  # threads racing here all get the first one stored
        state: T = self._states[name]
        return state

    def use_settings(self, section: Section) -> None:
        """Make ``section`` this process's section of its name (tests and tools; other processes keep theirs).

        The one way to override a domain's settings after :meth:`open`; before it,
        ``load_settings(nightlights={...})`` does the same from plain values.
        """
        self.settings = self.settings.replaced(section)

    def wake(self) -> None:
        """Wake this process's worker, if it runs one, after enqueueing."""
        if self.wake_worker is not None:
            self.wake_worker()

    def check_catalog(self) -> None:
        """Raise :class:`SourceUnavailable` when the catalog database cannot be used."""
        with translate_errors("catalog"), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def transfer(self) -> Any:
        """A new transfer engine on this store (use ``async with``)."""
        from earthkeep.transfer.engine import TransferEngine

        return TransferEngine(self.store, self.settings.transfer)

    def close(self) -> None:
        self.engine.dispose()


def freeze_startup_objects() -> None:
    """Take what start-up allocated (modules, the app, settings) out of the garbage collector's sight.

    A long-running process (``earthkeep serve``, the ingest consumers) holds a
    few hundred thousand objects from start-up that will live as long as it
    does. Every full collection walked all of them: with the collector's
    allocation rate that was a 0.1-0.2 s pause every few dozen requests, about
    3 us of CPU per observation (bench/ingest.py). ``gc.freeze`` moves them to
    a generation collections skip; objects made afterwards are collected as
    before.
    """
    import gc

    gc.collect()
    gc.freeze()
    log.debug("runtime.startup_objects_frozen", frozen=gc.get_freeze_count())
