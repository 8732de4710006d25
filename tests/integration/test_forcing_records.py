"""Recording forcing files: files checked at about the same time share a transaction, a bad one fails alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from forcing_support import config, open_services
from sqlalchemy import select

from earthkeep.catalog.items import AssetSpec
from earthkeep.catalog.tables import Item
from earthkeep.forcing.records import BatchRecorder, ForcingFile
from earthkeep.forcing.tables import AggregatorDataset
from earthkeep.forcing.wind import GRIB_MEDIA, wind_record
from earthkeep.sources.gfs import GfsFile

CYCLE = datetime(2024, 1, 1, 0, tzinfo=UTC)


def _record(services, hour: int, **properties) -> ForcingFile:
    f = GfsFile(CYCLE, hour, "1p00")
    record = wind_record(
        f, config(services), [AssetSpec("data", f.store_key, 100 + hour, "0" * 64, GRIB_MEDIA, ("data",))]
    )
    return ForcingFile(**{**record.__dict__, "properties": {**record.properties, **properties}})


def _catalogued(services) -> tuple[set[str], set[str]]:
    with services.sessions() as s:
        items = set(s.scalars(select(Item.item_id).where(Item.collection == "gfs-wind")))
        rows = {r.file_path for r in s.scalars(select(AggregatorDataset))}
    return items, rows


def test_files_handed_in_together_are_all_recorded(db_url: str, tmp_path: Path, monkeypatch) -> None:
    services = open_services(db_url, tmp_path, "http://127.0.0.1:9")
    recorder = BatchRecorder(services.sessions)
    transactions = []
    write = recorder._write_one_transaction
    monkeypatch.setattr(
        recorder, "_write_one_transaction", lambda files: (transactions.append(len(files)), write(files))
    )
    records = [_record(services, h) for h in range(0, 24, 3)]

    async def all_of_them() -> None:
        await asyncio.gather(*(recorder.record(r) for r in records))

    asyncio.run(all_of_them())
    items, rows = _catalogued(services)
    assert items == {r.item_id for r in records} and rows == {r.data_asset.store_key for r in records}
    assert sum(transactions) == len(records) and len(transactions) < len(records)


def test_a_file_that_cannot_be_recorded_fails_alone(db_url: str, tmp_path: Path) -> None:
    services = open_services(db_url, tmp_path, "http://127.0.0.1:9")
    recorder = BatchRecorder(services.sessions)
    good = [_record(services, h) for h in (0, 3, 9)]
    bad = _record(services, 6, broken=object())  # not JSON: the database refuses the item

    async def together() -> list:
        return await asyncio.gather(*(recorder.record(r) for r in [good[0], bad, *good[1:]]), return_exceptions=True)

    results = asyncio.run(together())
    assert results[0] is None and results[2:] == [None, None]
    assert isinstance(results[1], Exception)
    items, _ = _catalogued(services)
    assert items == {r.item_id for r in good}
    with pytest.raises(type(results[1])):
        asyncio.run(recorder.record(bad))
