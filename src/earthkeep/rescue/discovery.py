"""Discovery runs: list a CKAN portal (full or since the last high-water mark), keep it, sweep for gone datasets.

A run is recorded in the run ledger (source ``ckan``). Three things overlap:
the listing threads fetch pages, the calling thread prepares each page's rows
(:func:`earthkeep.rescue.rows.prepare_page`: plans, JSON, tuples) and one writer
thread keeps the prepared pages in order, each in its own transaction, at most
:data:`WRITE_AHEAD` behind. The high-water mark of the portal and
filter scope only moves when a run completes, so a failed run loses nothing:
the next one starts from the same place. The sweep lists every id in scope
(``fl=id,name,metadata_modified``, same windows) and marks the missing ones gone,
refusing when implausibly many would go (see ``max_gone_fraction``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, sessionmaker

from earthkeep.catalog.runs import finish_run, start_run
from earthkeep.catalog.tables import utcnow
from earthkeep.rescue.bulk import Encoder, bulk_tuning
from earthkeep.rescue.catalog import Context, PageResult, mark_gone, write_page
from earthkeep.rescue.rows import PreparedPage, prepare_page
from earthkeep.rescue.settings import RescueSettings
from earthkeep.rescue.tables import Harvest
from earthkeep.sources.ckan import SWEEP_FIELDS, CkanClient, Filters, Lister

log = structlog.get_logger(__name__)
SOURCE = "ckan"
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
            _keep_pages(sessions, ctx, lister, dialect, total, on_page)
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
) -> None:
    """Prepare each listed page here while one writer thread keeps the ones before it, in order.

    The first failure stops the run: pages not yet written are dropped (the high-water mark does
    not move, so the next run lists them again) and the listing is closed.
    """
    enc = Encoder(dialect)
    pending: deque[Future[PageResult]] = deque()

    def done(f: Future[PageResult]) -> None:
        total.add(f.result())
        if on_page:
            on_page(lister.stats.records, lister.stats.reported)

    with (
        closing(_PageWriter(sessions)) as keeper,
        ThreadPoolExecutor(1, thread_name_prefix="rescue-writer") as writer,
        closing(lister.pages()) as pages,
    ):
        try:
            for page in pages:
                pending.append(writer.submit(keeper.write, ctx, prepare_page(enc, ctx, page)))
                while pending and (len(pending) > WRITE_AHEAD or pending[0].done()):
                    done(pending.popleft())
            while pending:
                done(pending.popleft())
        finally:
            for f in pending:
                f.cancel()


class _PageWriter:
    """Keeps a run's pages, each in its own transaction, on one connection held for the whole run.

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
        if self._conn is None:
            self._conn = self._open()
        with self.sessions(bind=self._conn) as s, s.begin():
            return write_page(s, ctx, page)

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
