"""The transfer engine as the GFS collector uses it: ranges known from the .idx, no probe, kept connections."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from earthkeep.config import TransferSettings
from earthkeep.errors import IntegrityError, TransferFailed
from earthkeep.store.obstore import ObstoreStore
from earthkeep.testbed import Fault, FaultInjector, create_file_app, serve_app
from earthkeep.transfer import RetryPolicy, TransferEngine, TransferRequest
from earthkeep.transfer import http as transfer_http
from earthkeep.transfer.partial import PartialFile
from earthkeep.transfer.request import partial_name

SIZE = 3 << 20


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FaultInjector, bytes]]:
    root = tmp_path_factory.mktemp("files")
    data = random.Random(3).randbytes(SIZE)
    (root / "f.grib2").write_bytes(data)
    injector = FaultInjector(create_file_app(root))
    with serve_app(injector) as base:
        yield base, injector, data


@pytest.fixture
def engine_parts(served, tmp_path: Path) -> tuple[ObstoreStore, TransferSettings, list[float]]:
    served[1].clear()
    settings = TransferSettings(work_dir=tmp_path / "work", segments=1, retries=2, allow_private=True)
    return ObstoreStore.local(tmp_path / "store"), settings, []


def _engine(parts) -> TransferEngine:
    store, settings, sleeps = parts

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return TransferEngine(store, settings, retry=RetryPolicy(sleep=sleep))


async def test_unprobed_ranges_take_one_get_and_learn_the_remote_from_it(served, engine_parts) -> None:
    base, injector, data = served
    ranges = [(1000, 1999), (2000, 2999), (SIZE - 10, SIZE - 1)]
    async with _engine(engine_parts) as engine:
        result = await engine.fetch(TransferRequest(f"{base}/f.grib2", "g/a", ranges=ranges, probe=False))
    expected = data[1000:3000] + data[-10:]
    assert await engine_parts[0].get("g/a") == expected
    assert result.sha256 == hashlib.sha256(expected).hexdigest()
    assert [(r.method, r.range) for r in injector.records] == [
        ("GET", "bytes=1000-2999"),
        ("GET", f"bytes={SIZE - 10}-{SIZE - 1}"),
    ]
    assert result.headers["content-range"] == f"bytes 1000-2999/{SIZE}" and result.headers["etag"]


async def test_unprobed_whole_file_is_one_get(served, engine_parts) -> None:
    base, injector, data = served
    async with _engine(engine_parts) as engine:
        await engine.fetch(TransferRequest(f"{base}/f.grib2", "g/whole", probe=False))
    assert await engine_parts[0].get("g/whole") == data
    assert [(r.method, r.range) for r in injector.records] == [("GET", None)]


@pytest.mark.parametrize("ranges", [[(SIZE - 10, SIZE + 10)], [(SIZE + 5, SIZE + 10)]])
async def test_unprobed_ranges_that_do_not_fit_the_file_are_an_integrity_error(served, engine_parts, ranges) -> None:
    base, injector, _ = served
    async with _engine(engine_parts) as engine:
        with pytest.raises(IntegrityError, match="do not match the file"):
            await engine.fetch(TransferRequest(f"{base}/f.grib2", "g/past", ranges=ranges, probe=False))
    assert len(injector.records) == 1 and engine_parts[2] == []  # no retry
    assert await engine_parts[0].list() == [] and not list(engine_parts[1].work_dir.iterdir())


async def test_unprobed_ranges_on_a_server_ignoring_them_fail_at_once(served, engine_parts) -> None:
    base, injector, _ = served
    injector.set_faults([Fault("ignore_range", times=None)])
    async with _engine(engine_parts) as engine:
        with pytest.raises(TransferFailed, match="does not answer byte-range requests"):
            await engine.fetch(TransferRequest(f"{base}/f.grib2", "g/x", ranges=[(0, 99)], probe=False))
    assert [r.method for r in injector.records] == ["GET"] and engine_parts[2] == []


async def test_a_partial_file_left_behind_is_checked_with_a_probe(served, engine_parts) -> None:
    base, injector, data = served
    req = TransferRequest(f"{base}/f.grib2", "g/left", ranges=[(0, 99)], probe=False)
    stale = await PartialFile.open(engine_parts[1].work_dir, partial_name(req), {"url": "elsewhere"})
    await stale.write(0, [b"x" * 100])
    await stale.close()
    async with _engine(engine_parts) as engine:
        await engine.fetch(req)
    assert await engine_parts[0].get("g/left") == data[:100]  # the stale bytes were not trusted
    assert [r.method for r in injector.records] == ["HEAD", "GET"]


async def test_probe_and_downloads_share_one_connection(served, engine_parts, monkeypatch) -> None:
    base, injector, data = served
    opened = []
    connect = transfer_http._LargeReadBackend.connect_tcp

    async def counting(self, *args, **kwargs):
        opened.append(args[:2])
        return await connect(self, *args, **kwargs)

    monkeypatch.setattr(transfer_http._LargeReadBackend, "connect_tcp", counting)
    async with _engine(engine_parts) as engine:
        for i in range(3):
            await engine.head(f"{base}/f.grib2")
            await engine.fetch(TransferRequest(f"{base}/f.grib2", f"g/{i}", ranges=[(10, 5000)]))
            await engine.fetch(TransferRequest(f"{base}/f.grib2", f"w/{i}"))
    assert [r.method for r in injector.records].count("HEAD") == 3 * 3
    assert len(opened) == 1 and await engine_parts[0].get("w/2") == data
