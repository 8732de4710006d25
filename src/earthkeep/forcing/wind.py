"""Collect GFS 10 m wind files: claim, plan from the inventory, fetch, decode-check, store, record.

Per file, mirrors are tried in priority order: the ``.idx`` (read when planning
found the cycle complete, else fetched through the transfer engine) gives the
byte ranges of the wanted messages, fetched merged into a local staging
directory (one ``GET``: the ranges come from the ``.idx``, so the engine needs
no ``HEAD`` first and checks the answer's ``Content-Range`` instead), the result is decoded with eccodes
(:func:`earthkeep.raster.grib.check_grib`: exactly the wanted messages, on the
expected grid, with plausible values), then handed to the real store (a rename
when it is local) and recorded: catalog item + ``aggregator_datasets`` row,
files checked at about the same time sharing one transaction
(:class:`~earthkeep.forcing.records.BatchRecorder`). Nothing that failed the
check reaches the store or the catalog. Files run concurrently
(``FORCING_GFS_CONCURRENCY``) on one engine (one connection pool); a lease per
file keeps two collectors from fetching the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import structlog
from sqlalchemy import select

from earthkeep.catalog.items import AssetSpec
from earthkeep.catalog.tables import Item
from earthkeep.errors import EarthkeepError
from earthkeep.forcing import claims
from earthkeep.forcing.records import GFS_COLLECTION, BatchRecorder, ForcingFile
from earthkeep.forcing.settings import ForcingConfig
from earthkeep.forcing.staging import StagingDir
from earthkeep.raster.grib import check_grib, get_grid
from earthkeep.sources.gfs import GfsFile, RangePlan, plan_ranges
from earthkeep.transfer.engine import TransferEngine, TransferRequest

if TYPE_CHECKING:
    from earthkeep.runtime import Services
    from earthkeep.store.base import Store
    from earthkeep.transfer.http import RetryPolicy

log = structlog.get_logger(__name__)
GRIB_MEDIA = "application/x-grib2"


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file: ``stored``, ``present`` (catalogued before), ``claimed`` (another
    collector has it) or ``failed``."""

    file_id: str
    status: str
    nbytes: int = 0
    mirror: str | None = None
    error: str | None = None


def catalogued(services: Services, files: Sequence[GfsFile]) -> set[str]:
    """Ids of ``files`` already in the catalog."""
    ids = [f.file_id for f in files]
    with services.sessions() as s:
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            found.update(
                s.scalars(
                    select(Item.item_id).where(Item.collection == GFS_COLLECTION, Item.item_id.in_(ids[i : i + 500]))
                )
            )
    return found


class WindCollector:
    """Fetches GFS files into ``services.store`` through a transfer engine on a staging directory.

    Use as ``async with WindCollector(...) as collector:``; it is also what
    planning reads inventories with (:func:`~earthkeep.sources.gfs.latest_complete_cycle`).
    """

    def __init__(
        self,
        services: Services,
        cfg: ForcingConfig,
        *,
        retry: RetryPolicy | None = None,
        progress: Callable[[int], None] | None = None,
        owner: str | None = None,
    ) -> None:
        self.services = services
        self.cfg = cfg
        self.owner = owner or uuid.uuid4().hex  # see jobs.handlers.lease_owner
        self.retry = retry
        self.progress = progress
        self._grid = get_grid(cfg.sources.gfs_grid)
        self._recorder = BatchRecorder(services.sessions)
        self._exit = contextlib.AsyncExitStack()
        self._stage: StagingDir | None = None
        self._engine: TransferEngine | None = None
        self._inventories: dict[str, str] = {}
        self._checks: ThreadPoolExecutor | None = None

    async def __aenter__(self) -> WindCollector:
        try:
            tmp = self._exit.enter_context(tempfile.TemporaryDirectory(prefix="earthkeep-gfs-"))
            # Decoding is CPU work that eccodes does without the GIL: one thread per core, apart from the
            # default executor, so that the downloads' short file writes never queue behind a decode.
            self._checks = self._exit.enter_context(ThreadPoolExecutor(os.cpu_count() or 2, "gfs-check"))
            self._stage = StagingDir(Path(tmp))
            # One request per file: a subset is a few MiB, and files already run in parallel.
            settings = self.services.settings.transfer.model_copy(update={"segments": 1})
            engine = TransferEngine(cast("Store", self._stage), settings, retry=self.retry)
            self._engine = await self._exit.enter_async_context(engine)
        except BaseException:
            await self._exit.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._exit.aclose()

    @property
    def engine(self) -> TransferEngine:
        if self._engine is None:
            raise RuntimeError("use WindCollector as an async context manager")
        return self._engine

    @property
    def stage(self) -> StagingDir:
        if self._stage is None:
            raise RuntimeError("use WindCollector as an async context manager")
        return self._stage

    async def collect(self, files: Sequence[GfsFile], mirrors: dict[str, str]) -> list[FileOutcome]:
        """Fetch every file not yet catalogued and not leased by another collector; one outcome per file."""
        db, ttl = self.services.engine, self.cfg.sources.claim_ttl_s
        present = await asyncio.to_thread(catalogued, self.services, files)
        todo = [f for f in files if f.file_id not in present]
        held = await asyncio.to_thread(claims.claim_many, db, [f.file_id for f in todo], self.owner, ttl)
        mine = [f for f in todo if f.file_id in held]
        done_meanwhile = await asyncio.to_thread(catalogued, self.services, mine)  # by a collector before us
        outcomes = {f.file_id: FileOutcome(f.file_id, "present") for f in files if f.file_id in present}
        outcomes |= {f.file_id: FileOutcome(f.file_id, "claimed") for f in todo if f.file_id not in held}
        outcomes |= {i: FileOutcome(i, "present") for i in done_meanwhile}
        fetch = [f for f in mine if f.file_id not in done_meanwhile]
        try:
            for o in await self._fetch_all(fetch, mirrors):
                outcomes[o.file_id] = o
        finally:
            errors = {f.file_id: getattr(outcomes.get(f.file_id), "error", "interrupted") for f in mine}
            await asyncio.to_thread(claims.release_many, db, self.owner, errors)
        return [outcomes[f.file_id] for f in files]

    async def _fetch_all(self, files: Sequence[GfsFile], mirrors: dict[str, str]) -> list[FileOutcome]:
        gate = asyncio.Semaphore(self.cfg.sources.gfs_concurrency)
        engine, stage = self.engine, self.stage

        async def one(f: GfsFile) -> FileOutcome:
            async with gate:
                return await self._from_mirrors(engine, stage, f, mirrors)

        return list(await asyncio.gather(*(one(f) for f in files)))

    async def _from_mirrors(
        self, engine: TransferEngine, stage: StagingDir, f: GfsFile, mirrors: dict[str, str]
    ) -> FileOutcome:
        errors: list[str] = []
        for name, base in mirrors.items():
            try:
                nbytes = await self._fetch_one(engine, stage, f, base)
            except EarthkeepError as exc:
                log.warning("gfs.file_failed", file=f.file_id, mirror=name, error=str(exc))
                errors.append(f"{name}: {exc}")
                continue
            return FileOutcome(f.file_id, "stored", nbytes, name)
        return FileOutcome(f.file_id, "failed", error="; ".join(errors) or "no configured mirror keeps files this old")

    async def inventory(self, url: str) -> str:
        """The text of the ``.idx`` at ``url`` (:class:`NotFound` when it is not published).

        Planning reads every inventory of a cycle to know it is complete; the
        text is kept, so that the file's byte-range plan needs no second request.
        """
        text = await self._read_inventory(url)
        self._inventories[url] = text
        return text

    async def _read_inventory(self, url: str) -> str:
        key = f"idx/{uuid.uuid4().hex[:12]}.idx"
        path = self.stage.path(key)
        try:
            await self.engine.fetch(TransferRequest(url=url, key=key, content_type="text/plain", probe=False))
            return path.read_text(errors="replace")  # a few KiB on local disk: not worth a thread
        finally:
            path.unlink(missing_ok=True)

    async def _fetch_one(self, engine: TransferEngine, stage: StagingDir, f: GfsFile, base: str) -> int:
        grib_key = f"grib/{uuid.uuid4().hex[:12]}.grib2"
        try:
            idx_url = f.idx_url(base)
            idx_text = self._inventories.pop(idx_url, None) or await self._read_inventory(idx_url)
            plan = plan_ranges(idx_text, self.cfg.sources.gfs_patterns, where=idx_url)
            req = TransferRequest(
                url=f.url(base),
                key=grib_key,
                ranges=plan.ranges,
                size=plan.known_size,
                content_type=GRIB_MEDIA,
                probe=False,
            )
            result = await engine.fetch(req, progress=self.progress)
            await asyncio.get_running_loop().run_in_executor(self._checks, self._check, stage.path(grib_key), plan)
            await self._keep(f, stage.path(grib_key), result.sha256, result.size, base, plan)
            return result.size
        finally:
            stage.path(grib_key).unlink(missing_ok=True)  # gone already unless something failed

    def _check(self, path: Path, plan: RangePlan) -> None:
        expected = [(e.variable, _type_of_level(e.level), _level_value(e.level)) for e in plan.messages]
        check_grib(path, expected, grid=self._grid)

    async def _keep(self, f: GfsFile, path: Path, sha256: str | None, size: int, base: str, plan: RangePlan) -> None:
        store = self.services.store
        info = await store.put_file(f.store_key, path, content_type=GRIB_MEDIA, sha256=sha256, consume=True)
        idx_info = await store.put(f.store_key + ".idx", plan.subset_idx().encode(), content_type="text/plain")
        record = wind_record(
            f,
            self.cfg,
            [
                AssetSpec(
                    "data", f.store_key, size, info.sha256 or sha256, GRIB_MEDIA, ("data",), {"source_url": f.url(base)}
                ),
                AssetSpec("idx", idx_info.key, idx_info.size, idx_info.sha256, "text/plain", ("metadata",)),
            ],
        )
        await self._recorder.record(record)
        log.info("gfs.stored", file=f.file_id, bytes=size, key=f.store_key)


def wind_record(f: GfsFile, cfg: ForcingConfig, assets: Sequence[AssetSpec]) -> ForcingFile:
    """The catalog record of a GFS file; the analysis hours (f000, f003) are not forecasts."""
    is_forecast = f.hour not in cfg.sources.analysis_hours
    return ForcingFile(
        collection=GFS_COLLECTION,
        item_id=f.file_id,
        data_type="wind",
        source="noaa_gfs",
        forecast_date=f.cycle,
        valid_start=f.valid_time,
        valid_end=f.valid_time,
        is_forecast=is_forecast,
        bbox=(-180.0, -90.0, 180.0, 90.0),
        assets=assets,
        properties={
            "forecast_hour": f.hour,
            "grid": f.grid,
            "variables": list(cfg.sources.gfs_patterns),
            "role": "forecast" if is_forecast else "analysis",
        },
    )


def _type_of_level(level: str) -> str:
    if level.endswith(" m above ground"):
        return "heightAboveGround"
    if level.endswith(" mb"):
        return "isobaricInhPa"
    return {"surface": "surface", "mean sea level": "meanSea"}.get(level, level)


def _level_value(level: str) -> int:
    head = level.split(" ", 1)[0]
    try:
        return int(float(head))
    except ValueError:
        return 0


def summarise(outcomes: Sequence[FileOutcome]) -> dict[str, Any]:
    """Counts per status, bytes stored and the failures, for the run ledger."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return {
        "counts": counts,
        "bytes": sum(o.nbytes for o in outcomes),
        "failed": {o.file_id: o.error for o in outcomes if o.status == "failed"},
    }
