"""Mirror GINA NRT: list, skip what is catalogued, fetch through the transfer engine, verify, record.

One run per selection at a time (a lease in the catalog). Every file is checked
twice before it counts: the engine verifies size and md5 while downloading
(nothing unverified reaches the store), then h5py must open it. A bad file is
removed, written to the run ledger and to ``granule_failures``, and tried again
by a later run after a growing delay. Each good file is catalogued with its
``file`` message in one transaction, so a restart neither loses nor repeats one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from earthkeep.catalog.runs import close_interrupted, finish_run, start_run
from earthkeep.errors import IntegrityError, InvalidInput, NotFound, SourceUnavailable, TransferFailed
from earthkeep.granules.hdf5 import check_hdf5
from earthkeep.granules.locks import held
from earthkeep.granules.messages import granule_uri
from earthkeep.granules.records import backing_off, catalogued, record_failure, record_granule
from earthkeep.jobs.handlers import lease_owner
from earthkeep.sources.gina import (
    PLATFORMS,
    Refused,
    RemoteGranule,
    Selection,
    check_selection,
    parse_listing,
    search_params,
    search_url,
    transfer_request,
    wanted,
)
from earthkeep.transfer.engine import TransferEngine

if TYPE_CHECKING:
    from earthkeep.granules.config import GranuleConfig
    from earthkeep.granules.mail import MailAlerts
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)
SOURCE = "gina"
BAD_FILE = (IntegrityError, TransferFailed, NotFound, InvalidInput)


@dataclass
class MirrorReport:
    """What one run did."""

    run_id: str = ""
    listed: int = 0
    refused: list[Refused] = field(default_factory=list)
    skipped: int = 0
    stored: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes: int = 0

    def summary(self) -> dict[str, Any]:
        return {"listed": self.listed, "refused": len(self.refused), "skipped": self.skipped,
                "stored": len(self.stored), "failed": len(self.failed), "bytes": self.bytes}


@dataclass
class MirrorHooks:
    """Optional callbacks: bytes progress, a file catalogued (message data), error e-mails."""

    progress: Callable[[int], None] | None = None
    verified: Callable[[str], None] | None = None  # name, once md5 and HDF5 checks passed
    planned: Callable[[int, int], None] | None = None  # files, bytes
    stored: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None
    alerts: MailAlerts | None = None


async def list_remote(cfg: GranuleConfig, sel: Selection, client: httpx.AsyncClient
                      ) -> tuple[list[RemoteGranule], list[Refused]]:
    """Every listed granule of the selection (one products search per platform)."""
    url = search_url(cfg.viirs.gina_url)
    ok: list[RemoteGranule] = []
    refused: list[Refused] = []
    for platform in sel.platforms:
        try:
            r = await client.get(url, params=search_params(sel, platform))
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"GINA products search {url}: {type(exc).__name__}: {exc}") from exc
        if r.status_code != 200:
            raise SourceUnavailable(f"GINA products search {url} answered HTTP {r.status_code}; will retry")
        try:
            payload = r.json()
        except ValueError as exc:
            raise SourceUnavailable(f"GINA products search {url} did not answer JSON ({exc})") from exc
        good, bad = parse_listing(payload, url)
        ok += good
        refused += bad
    return ok, refused


def plan(services: Services, granules: list[RemoteGranule], sel: Selection) -> tuple[list[RemoteGranule], int]:
    """The granules to fetch now and how many were skipped (catalogued or backing off)."""
    origs = [PLATFORMS[p].orig for p in sel.platforms]
    with services.sessions() as s:
        skip = catalogued(s, [g.name for g in granules]) | backing_off(s)
    todo = wanted(granules, sel.segments, origs, skip)
    relevant = wanted(granules, sel.segments, origs, set())
    return todo, len(relevant) - len(todo)


async def mirror(services: Services, cfg: GranuleConfig, *, backfill_days: int | None = None,
                 hooks: MirrorHooks | None = None, client: httpx.AsyncClient | None = None,
                 job_id: int | None = None) -> MirrorReport:
    """One mirror run of the configured selection (raises :class:`Conflict` if one is running).

    Run by a job (``job_id``), the lease belongs to the job and a run of the same
    job left ``running`` by a killed worker is closed as failed.
    """
    hooks = hooks or MirrorHooks()
    sel = check_selection(cfg.selection(backfill_days))
    async with held(services.engine, sel.lock_name(), cfg.viirs.lock_ttl_s, lease_owner(job_id)):
        with services.sessions.begin() as s:
            if job_id is not None:
                close_interrupted(s, SOURCE, "viirs-sdr", job_id)
            run_id = start_run(s, SOURCE, collection="viirs-sdr", job_id=job_id).id
        report = MirrorReport(run_id=run_id)
        try:
            await _run(services, cfg, sel, report, hooks, client)
        except BaseException as exc:
            _finish(services, report, "failed", f"{type(exc).__name__}: {exc}")
            if hooks.alerts and isinstance(exc, Exception):
                hooks.alerts.error("mirror", f"mirror run failed: {exc}")
            raise
        _finish(services, report, "completed", None)
    log.info("granules.mirrored", **report.summary())
    return report


async def _run(services: Services, cfg: GranuleConfig, sel: Selection, report: MirrorReport,
               hooks: MirrorHooks, client: httpx.AsyncClient | None) -> None:
    own = client is None
    client = client or httpx.AsyncClient(timeout=cfg.viirs.lock_ttl_s / 2, follow_redirects=False)
    try:
        granules, report.refused = await list_remote(cfg, sel, client)
    finally:
        if own:
            await client.aclose()
    for r in report.refused:
        log.warning("granules.refused", entry=r.entry, reason=r.reason)
        if hooks.alerts:
            hooks.alerts.error("mirror", f"refused listing entry: {r.reason}")
    report.listed = len(granules)
    todo, report.skipped = plan(services, granules, sel)
    if hooks.planned:
        hooks.planned(len(todo), sum(g.size or 0 for g in todo))
    transfer = services.settings.transfer.model_copy(update={"segments": cfg.core.connections})
    gate = asyncio.Semaphore(cfg.viirs.file_concurrency)
    async with TransferEngine(services.store, transfer) as engine:

        async def one(g: RemoteGranule) -> None:
            async with gate:
                await fetch_one(services, cfg, engine, g, report, hooks)

        await asyncio.gather(*(one(g) for g in todo))


async def fetch_one(services: Services, cfg: GranuleConfig, engine: TransferEngine, g: RemoteGranule,
                    report: MirrorReport, hooks: MirrorHooks) -> None:
    """Fetch, verify and catalogue one granule; a bad file is recorded and left for a later run."""
    req = transfer_request(g)
    try:
        res = await engine.fetch(req, progress=hooks.progress)
        try:
            await check_hdf5(services.store, req.key, res.size)
        except IntegrityError:
            await services.store.delete(req.key)
            raise
    except BAD_FILE as exc:
        _bad_file(services, cfg, g, exc, report, hooks)
        return
    if hooks.verified:
        hooks.verified(g.name)
    uri = granule_uri(services.store, req.key, g.name, cfg.viirs.uri_base)

    def record() -> dict[str, Any]:
        with services.sessions.begin() as s:
            return record_granule(s, sdr=g.sdr, name=g.name, key=req.key, size=res.size, sha256=res.sha256,
                                  md5=res.md5, uri=uri, subject=cfg.viirs.subject, source=SOURCE, source_url=g.url)

    data = await asyncio.to_thread(record)
    report.stored.append(g.name)
    report.bytes += res.size
    if hooks.stored:
        out = hooks.stored(data)
        if asyncio.iscoroutine(out):
            await out


def _bad_file(services: Services, cfg: GranuleConfig, g: RemoteGranule, exc: Exception,
              report: MirrorReport, hooks: MirrorHooks) -> None:
    error = f"{type(exc).__name__}: {exc}"
    report.failed[g.name] = error
    with services.sessions.begin() as s:
        f = record_failure(s, g.name, g.url, error, cfg.viirs.retry_base_s)
    log.warning("granules.bad_file", name=g.name, error=error, attempts=f.attempts)
    if hooks.alerts:
        hooks.alerts.error("mirror", f"bad file {g.name}: {type(exc).__name__}")


def _finish(services: Services, report: MirrorReport, status: str, error: str | None) -> None:
    details = {**report.summary(),
               "failed_files": dict(list(report.failed.items())[:200]),
               "refused_entries": [{"entry": r.entry, "reason": r.reason} for r in report.refused[:50]]}
    with services.sessions.begin() as s:
        finish_run(s, report.run_id, status, records=len(report.stored), nbytes=report.bytes,
                   failed=len(report.failed), error=error, details=details)
