"""Catalog records of forcing files and runs, with the seed's tables kept in step.

A forcing file is a catalog item (collection ``gfs-wind`` or ``cmems-currents``)
and a row of ``aggregator_datasets`` written in the same transaction; a run is
an entry of the run ledger and a row of ``aggregator_collection_status``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from earthkeep.catalog.items import AssetSpec, delete_items, upsert_item
from earthkeep.catalog.runs import INTERRUPTED, finish_run, start_run
from earthkeep.catalog.tables import Asset, Item, Run, utcnow
from earthkeep.errors import InvalidInput, NotFound
from earthkeep.forcing.tables import AggregatorCollectionStatus, AggregatorDataset

GFS_COLLECTION = "gfs-wind"
CMEMS_COLLECTION = "cmems-currents"
COLLECTIONS = {"wind": GFS_COLLECTION, "ocean_currents": CMEMS_COLLECTION}
DATA_TYPES = tuple(COLLECTIONS)
KINDS = {"wind": "wind", "currents": "ocean_currents", "ocean_currents": "ocean_currents"}


@dataclass(frozen=True)
class ForcingFile:
    """What is recorded of one stored forcing file."""

    collection: str
    item_id: str
    data_type: str
    source: str
    forecast_date: datetime
    valid_start: datetime
    valid_end: datetime
    is_forecast: bool
    bbox: Sequence[float]
    assets: Sequence[AssetSpec]
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def data_asset(self) -> AssetSpec:
        return next(a for a in self.assets if "data" in a.roles)


def data_type_of(kind: str) -> str:
    """``wind`` or ``ocean_currents`` for a user's ``kind`` (``wind``, ``currents``, ``ocean_currents``)."""
    try:
        return KINDS[kind]
    except KeyError:
        raise InvalidInput(f"unknown forcing kind {kind!r}; valid: wind, currents") from None


def record_file(session: Session, f: ForcingFile) -> Item:
    """Upsert the catalog item and its ``aggregator_datasets`` row (caller's transaction)."""
    props = {
        **f.properties,
        "data_type": f.data_type,
        "source": f.source,
        "is_forecast": f.is_forecast,
        "forecast_date": f.forecast_date.isoformat(),
        "forecast_cycle": f"{f.forecast_date:%H}",
    }
    item = upsert_item(
        session,
        collection=f.collection,
        item_id=f.item_id,
        start=f.valid_start,
        end=f.valid_end,
        bbox=f.bbox,
        properties=props,
        assets=f.assets,
    )
    data = f.data_asset
    row = session.scalars(select(AggregatorDataset).where(AggregatorDataset.file_path == data.store_key)).first()
    if row is None:
        row = AggregatorDataset(id=str(uuid.uuid4()), file_path=data.store_key, created_at=utcnow())
        session.add(row)
    row.data_type, row.source, row.is_forecast = f.data_type, f.source, f.is_forecast
    row.forecast_date, row.forecast_cycle = f.forecast_date, f"{f.forecast_date:%H}"
    row.valid_time_start, row.valid_time_end = f.valid_start, f.valid_end
    row.file_size_bytes = data.size
    session.flush()
    return item


class BatchRecorder:
    """Records forcing files with as few transactions as their pace allows (group commit).

    ``await recorder.record(f)`` returns once ``f`` is committed (or raises why
    it could not be). Files handed in while a transaction runs go into the next
    one, together. A transaction that fails is retried file by file, so that one
    bad file does not take the others with it. Only call :meth:`record` for a
    file that is complete and checked: a batch never waits for stragglers.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._waiting: list[tuple[ForcingFile, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, f: ForcingFile) -> None:
        """Record ``f`` (its item and ``aggregator_datasets`` row); return when committed."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((f, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        await done

    async def _write_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                errors = await asyncio.to_thread(self._write, [f for f, _ in batch])
            except BaseException:  # cancelled: nobody of this batch may wait forever
                for _, done in batch:
                    done.cancel()
                raise
            for (_, done), error in zip(batch, errors, strict=True):
                if done.done():
                    continue  # its caller was cancelled
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

    def _write(self, files: Sequence[ForcingFile]) -> list[Exception | None]:
        """One transaction for ``files``, else one each; every file's error or None."""
        try:
            self._write_one_transaction(files)
            return [None] * len(files)
        except Exception as exc:
            if len(files) == 1:
                return [exc]
        errors: list[Exception | None] = []
        for f in files:
            try:
                self._write_one_transaction([f])
                errors.append(None)
            except Exception as exc:
                errors.append(exc)
        return errors

    def _write_one_transaction(self, files: Sequence[ForcingFile]) -> None:
        with self._sessions.begin() as s:
            for f in files:
                record_file(s, f)


def delete_files(session: Session, items: Sequence[Item]) -> list[str]:
    """Delete items, their assets and their ``aggregator_datasets`` rows; return the store keys."""
    keys = delete_items(session, items)
    if keys:
        session.execute(delete(AggregatorDataset).where(AggregatorDataset.file_path.in_(keys)))
    return keys


def begin_run(
    session: Session, source: str, data_type: str, *, job_id: int | None = None, trace_id: str | None = None
) -> str:
    """Open a run in the ledger and its ``aggregator_collection_status`` row; return the run id.

    A run of the same job and data type still ``running`` belongs to an attempt
    whose worker died (the job queue runs one attempt at a time): it is closed
    as failed here, so that no run stays "running" forever.
    """
    if job_id is not None:
        _close_interrupted(session, source, data_type, job_id)
    run = start_run(session, source, collection=COLLECTIONS.get(data_type, data_type), job_id=job_id, trace_id=trace_id)
    session.add(
        AggregatorCollectionStatus(
            collection_id=run.id, data_type=data_type, status="running", started_at=run.started_at, records_collected=0
        )
    )
    session.flush()
    return run.id


def _close_interrupted(session: Session, source: str, data_type: str, job_id: int) -> None:
    collection = COLLECTIONS.get(data_type, data_type)
    stale = session.scalars(select(Run.id).where(Run.job_id == job_id, Run.source == source,
                                                 Run.collection == collection, Run.status == "running")).all()
    for run_id in stale:
        end_run(session, run_id, "failed", error=INTERRUPTED)


def end_run(
    session: Session,
    run_id: str,
    status: str,
    *,
    records: int = 0,
    nbytes: int = 0,
    failed: int = 0,
    error: str | None = None,
    details: dict[str, Any] | None = None,
) -> Run:
    """Close a run in the ledger and its status row together."""
    run = finish_run(
        session, run_id, status, records=records, nbytes=nbytes, failed=failed, error=error, details=details
    )
    session.execute(
        update(AggregatorCollectionStatus)
        .where(AggregatorCollectionStatus.collection_id == run_id)
        .values(status=status, completed_at=run.completed_at, records_collected=records, error_message=error)
    )
    return run


@dataclass(frozen=True)
class DatasetQuery:
    """Filters of ``GET /forcing/datasets``."""

    data_type: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    is_forecast: bool | None = None
    source: str | None = None
    limit: int = 500


def list_datasets(session: Session, q: DatasetQuery) -> list[AggregatorDataset]:
    """Rows of ``aggregator_datasets`` overlapping ``start..end``, by valid time then freshest first."""
    stmt = select(AggregatorDataset)
    if q.data_type:
        stmt = stmt.where(AggregatorDataset.data_type == data_type_of(q.data_type))
    if q.start is not None:
        stmt = stmt.where(AggregatorDataset.valid_time_end >= q.start)
    if q.end is not None:
        stmt = stmt.where(AggregatorDataset.valid_time_start <= q.end)
    if q.is_forecast is not None:
        stmt = stmt.where(AggregatorDataset.is_forecast.is_(q.is_forecast))
    if q.source:
        stmt = stmt.where(AggregatorDataset.source == q.source)
    stmt = stmt.order_by(AggregatorDataset.valid_time_start, AggregatorDataset.forecast_date.desc()).limit(q.limit)
    return list(session.scalars(stmt))


def dataset_for_download(session: Session, dataset_id: str) -> AggregatorDataset:
    """The row of ``dataset_id``, its ``last_accessed_at`` (and its item's) set to now."""
    try:
        uuid.UUID(dataset_id)
    except ValueError:
        raise InvalidInput(f"dataset id {dataset_id!r} is not a UUID") from None
    row = session.get(AggregatorDataset, dataset_id)
    if row is None or row.file_path is None:
        raise NotFound(f"no forcing dataset {dataset_id}")
    now = utcnow()
    row.last_accessed_at = now
    item_pk = select(Asset.item_pk).where(Asset.store_key == row.file_path).scalar_subquery()
    session.execute(update(Item).where(Item.pk == item_pk).values(last_accessed_at=now))
    session.flush()
    return row


def touch_served(session: Session, collection: str, store_key: str) -> None:
    """Record that the file at ``store_key`` was served: its ``aggregator_datasets.last_accessed_at``
    (for the forcing collections; a no-op for any other). The generic item download calls this next to
    the catalog's own ``touch``, so both ways of serving a forcing file leave the same trace."""
    if collection not in COLLECTIONS.values():
        return
    session.execute(
        update(AggregatorDataset)
        .where(AggregatorDataset.file_path == store_key)
        .values(last_accessed_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def items_of(
    session: Session, collection: str, *, start: datetime | None = None, end: datetime | None = None
) -> list[Item]:
    """Items of ``collection`` whose valid time overlaps ``start..end``, oldest first."""
    stmt = select(Item).where(Item.collection == collection)
    if start is not None:
        stmt = stmt.where(Item.end_datetime >= start)
    if end is not None:
        stmt = stmt.where(Item.start_datetime <= end)
    return list(session.scalars(stmt.order_by(Item.start_datetime, Item.item_id)))
