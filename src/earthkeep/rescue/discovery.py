"""Discovery runs: list a CKAN portal (full or since the last high-water mark), keep it, sweep for gone datasets.

A run is recorded in the run ledger (source ``ckan``). Three things overlap:
the listing threads fetch pages, the calling thread prepares each page's rows
(:func:`earthkeep.rescue.rows.prepare_page`: plans, JSON, tuples) and writer
threads keep the prepared pages, each in its own transaction, at most
:data:`WRITE_AHEAD` behind (one writer on SQLite, ``writers`` connections on
PostgreSQL). The high-water mark of the portal and
filter scope only moves when a run completes, so a failed run loses nothing:
the next one starts from the same place. The sweep lists every id in scope
(``fl=id,name,metadata_modified``, same windows) and marks the missing ones gone,
refusing when implausibly many would go (see ``max_gone_fraction``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, sessionmaker

from earthkeep.catalog.db import is_transient_conflict
from earthkeep.catalog.runs import finish_run, start_run
from earthkeep.catalog.tables import utcnow
from earthkeep.rescue.bulk import Encoder, bulk_tuning
from earthkeep.rescue.catalog import Context, PageResult, mark_gone, write_page
from earthkeep.rescue.rows import PreparedPage, prepare_page
from earthkeep.rescue.settings import RescueSettings
from earthkeep.rescue.tables import Harvest
from earthkeep.retry import Backoff, retry_sync
from earthkeep.sources.ckan import SWEEP_FIELDS, CkanClient, Filters, Lister

log = structlog.get_logger(__name__)
SOURCE = "ckan"
PAGE_ATTEMPTS = 3  # a page rolled back by a deadlock or serialization failure is kept again, up to this often
WRITE_AHEAD = 2  # prepared pages waiting for the writer (more only holds memory: the writer is the slower side)
SQLITE_RUN_CACHE_KIB = 64 * 1024  # the writer connection's SQLite page cache during a run


@dataclass
class DiscoveryRequest:
    """One run: which portal and scope, full or incremental, with or without a gone-sweep."""

    portal: str
    filters: Filters
    full: bool = False
    sweep: bool = False
    force_sweep: bool = False

    @classmethod
    def from_settings(cls, s: RescueSettings, payload: dict[str, Any] | None = None) -> DiscoveryRequest:
        """From settings, overridden by a job payload or API body (portal, organizations, groups, tags, ...)."""
        p = payload or {}
        filters = Filters(
            tuple(p.get("organizations", s.organizations)),
            tuple(p.get("groups", s.groups)),
            tuple(p.get("tags", s.tags)),
            str(p.get("query", s.query)),
        )
        return cls(
            str(p.get("portal") or s.portal).rstrip("/"),
            filters,
            bool(p.get("full", False)),
            bool(p.get("sweep", False)),
            bool(p.get("force", False)),
        )


def _harvest(s: Session, req: DiscoveryRequest) -> Harvest:
    key = req.filters.key()
    row = s.scalars(select(Harvest).where(Harvest.portal == req.portal, Harvest.scope_key == key)).one_or_none()
    if row is None:
        row = Harvest(portal=req.portal, scope_key=key, filters=req.filters.as_dict())
        s.add(row)
        s.flush()
    return row


def discover(
    sessions: sessionmaker[Session],
    settings: RescueSettings,
    req: DiscoveryRequest,
    *,
    allow_private: bool,
    client: CkanClient | None = None,
    trace_id: str | None = None,
    on_page: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run discovery (and the sweep when asked); return the run's summary.

    ``on_page(listed, reported)`` is called after each page is written (progress displays).
    """
    own = client is None
    client = client or CkanClient(req.portal, timeout_s=settings.timeout_s)
    with sessions.begin() as s:
        run = start_run(s, SOURCE, collection=req.portal, trace_id=trace_id)
        dialect = s.get_bind().dialect
        harvest = _harvest(s, req)
        since = (
            None
            if req.full or harvest.high_water is None
            else harvest.high_water - timedelta(seconds=settings.overlap_s)
        )
    ctx = Context(req.portal, run.id, settings.max_asset_bytes, allow_private)
    total = PageResult()
    lister = Lister(
        client,
        fq=req.filters.fq(),
        q=req.filters.query,
        rows=settings.rows,
        concurrency=settings.concurrency,
        since=since,
    )
    try:
        with bulk_tuning:
            _keep_pages(sessions, ctx, lister, dialect, total, on_page, writers=settings.writers)
            gone = _sweep(sessions, settings, req, ctx, client) if req.sweep else None
    except Exception as exc:
        with sessions.begin() as s:
            finish_run(
                s,
                run.id,
                "failed",
                records=total.created + total.modified,
                failed=total.invalid,
                error=str(exc)[:2000],
                details=_details(req, lister, total, since),
            )
        log.error("rescue.discover.failed", portal=req.portal, run_id=run.id, error=str(exc))
        raise
    finally:
        if own:
            client.close()
    details = _details(req, lister, total, since)
    if gone is not None:
        details["gone"], details["returned_by_sweep"] = gone
    with sessions.begin() as s:
        harvest = _harvest(s, req)
        hw = lister.stats.high_water
        if hw is not None and (harvest.high_water is None or hw > harvest.high_water):
            harvest.high_water = hw
        harvest.last_run_id, harvest.last_run_at = run.id, utcnow()
        if req.sweep:
            harvest.last_sweep_at = utcnow()
        finish_run(
            s,
            run.id,
            "completed",
            records=total.created + total.modified + total.returned,
            failed=total.invalid + lister.stats.invalid,
            details=details,
        )
    log.info(
        "rescue.discover.done",
        portal=req.portal,
        run_id=run.id,
        **{k: v for k, v in details.items() if isinstance(v, int)},
    )
    return {"run_id": run.id, **details}


def _keep_pages(
    sessions: sessionmaker[Session],
    ctx: Context,
    lister: Lister,
    dialect: Dialect,
    total: PageResult,
    on_page: Callable[[int, int], None] | None,
    *,
    writers: int = 1,
) -> None:
    """Prepare each listed page here while writer threads keep the ones before it.

    SQLite has one writer. On PostgreSQL ``writers`` connections keep pages at
    once, each page in its own transaction: the server's work on a page (JSONB,
    a dozen indexes, foreign-key checks) is most of a run, and one connection
    keeps only one server process busy. Pages hold disjoint datasets (the
    lister passes each id once per run); organizations a page adds become
    visible to the other writers only once it commits (:class:`_PageWriter`).
    Results are counted and reported in page order. The first failure stops the
    run: pages not yet written are dropped (the high-water mark does not move,
    so the next run lists them again; pages written meanwhile are then found
    unchanged) and the listing is closed.
    """
    enc = Encoder(dialect)
    pending: deque[Future[PageResult]] = deque()
    writers = 1 if dialect.name == "sqlite" else max(1, writers)

    def done(f: Future[PageResult]) -> None:
        total.add(f.result())
        if on_page:
            on_page(lister.stats.records, lister.stats.reported)

    with (
        closing(_Keepers(sessions)) as keepers,
        ThreadPoolExecutor(writers, thread_name_prefix="rescue-writer") as writer,
        closing(lister.pages()) as pages,
    ):
        try:
            for page in pages:
                pending.append(writer.submit(keepers.write, ctx, prepare_page(enc, ctx, page)))
                while pending and (len(pending) > WRITE_AHEAD + writers - 1 or pending[0].done()):
                    done(pending.popleft())
            while pending:
                done(pending.popleft())
        finally:
            for f in pending:
                f.cancel()


class _Keepers:
    """One :class:`_PageWriter` (one connection) per writer thread; all closed at the end."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._local = threading.local()
        self._all: list[_PageWriter] = []
        self._lock = threading.Lock()

    def write(self, ctx: Context, page: PreparedPage) -> PageResult:
        keeper: _PageWriter | None = getattr(self._local, "keeper", None)
        if keeper is None:
            keeper = self._local.keeper = _PageWriter(self.sessions)
            with self._lock:
                self._all.append(keeper)
        return keeper.write(ctx, page)

    def close(self) -> None:
        with self._lock:
            keepers, self._all = self._all, []
        for keeper in keepers:
            keeper.close()


class _PageWriter:
    """Keeps pages, each in its own transaction, on one connection held for the whole run.

    A page's new organizations go into the run's shared ``ctx.orgs`` only after
    its transaction commits: another writer's page that named one of them
    earlier would refer to a row it cannot see yet (a foreign-key error).

    On SQLite that connection has a larger page cache while the run lasts
    (:data:`SQLITE_RUN_CACHE_KIB`): a run inserts into a dozen indexes in no
    particular order, and with SQLite's default 2 MiB cache their pages were
    read back and written again and again (about a tenth of the writer's time).
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._conn: Connection | None = None
        self._sqlite = False

    def write(self, ctx: Context, page: PreparedPage) -> PageResult:
        """Keep ``page`` in one transaction; retried a few times if PostgreSQL rolled it back for a deadlock."""
        if self._conn is None:
            self._conn = self._open()
        conn = self._conn

        def once() -> PageResult:
            mine = replace(ctx, orgs=dict(ctx.orgs))  # organizations this page adds stay its own until it commits
            with self.sessions(bind=conn) as s, s.begin():
                result = write_page(s, mine, page)
            ctx.orgs.update(mine.orgs)  # committed: other writers may now refer to them
            return result

        def logged(attempt: int, _delay: float, exc: BaseException) -> None:
            log.warning("rescue.discover.page_retried", attempt=attempt, error=str(getattr(exc, "orig", exc)))

        return retry_sync(once, attempts=PAGE_ATTEMPTS, retryable=is_transient_conflict,
                          backoff=Backoff(base_s=0.05, max_s=1.0, jitter=0.5), on_retry=logged)

    def _open(self) -> Connection:
        engine = self.sessions.kw["bind"]
        conn: Connection = engine.connect()
        self._sqlite = conn.dialect.name == "sqlite"
        if self._sqlite:
            self._pragma(conn, f"cache_size=-{SQLITE_RUN_CACHE_KIB}")
        return conn

    def close(self) -> None:
        if self._conn is None:
            return
        try:
            if self._sqlite:
                self._pragma(self._conn, "cache_size=-2000")  # SQLite's default, for whoever uses it next
        finally:
            self._conn.close()
            self._conn = None

    @staticmethod
    def _pragma(conn: Connection, setting: str) -> None:
        raw: Any = conn.connection.dbapi_connection  # outside any transaction: PRAGMA runs on the driver
        raw.execute(f"PRAGMA {setting}")


def _sweep(
    sessions: sessionmaker[Session], settings: RescueSettings, req: DiscoveryRequest, ctx: Context, client: CkanClient
) -> tuple[int, int]:
    lister = Lister(
        client,
        fq=req.filters.fq(),
        q=req.filters.query,
        rows=settings.rows,
        concurrency=settings.concurrency,
        fl=SWEEP_FIELDS,
    )
    live: set[str] = set()
    for page in lister.pages():
        live.update(r["id"] for r in page)
    if lister.stats.invalid:
        log.warning("rescue.sweep.invalid_records", portal=req.portal, invalid=lister.stats.invalid)
    with sessions.begin() as s:
        gone, back = mark_gone(
            s, ctx, req.filters, live, max_fraction=settings.max_gone_fraction, force=req.force_sweep
        )
    log.info("rescue.sweep.done", portal=req.portal, live=len(live), gone=gone, returned=back)
    return gone, back


def _details(req: DiscoveryRequest, lister: Lister, total: PageResult, since: Any) -> dict[str, Any]:
    st = lister.stats
    out = {k: v for k, v in asdict(total).items() if k != "errors"}
    out.update(
        portal=req.portal,
        filters=req.filters.as_dict(),
        full=req.full or since is None,
        since=since.isoformat() if since else None,
        requests=st.requests,
        listed=st.records,
        reported=st.reported,
        duplicates=st.duplicates,
        invalid_records=st.invalid,
        windows=st.windows,
        high_water=st.high_water.isoformat() if st.high_water else None,
        listing_s=round(st.elapsed_s, 3),
    )
    errors = total.errors + ([st.first_invalid] if st.first_invalid else [])
    if errors:
        out["errors"] = errors[:20]
    return out
