"""The Store contract, run against every adapter: a local directory and SeaweedFS S3."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from earthkeep.config import StoreSettings
from earthkeep.errors import Conflict, IntegrityError, InvalidInput, NotFound, StoreUnavailable, UnsafePath
from earthkeep.store import obstore as obstore_module
from earthkeep.store.base import Store
from earthkeep.store.obstore import PART_SIZE, ObstoreStore, store_from_settings
from earthkeep.testbed.servers import SeaweedS3Server, free_port

MIB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def chunks_of(data: bytes, size: int = MIB) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def keys(store: ObstoreStore, prefix: str = "") -> list[str]:
    return [info.key for info in await store.list(prefix)]


# ---------------------------------------------------------------- round trips


async def test_put_get_round_trip_records_sha256(store):
    data = os.urandom(100_000)
    info = await store.put("a/b.bin", data, content_type="application/x-test")
    assert isinstance(store, Store)
    assert (info.key, info.size, info.sha256) == ("a/b.bin", len(data), sha(data))
    assert await store.get("a/b.bin") == data
    assert (await store.head("a/b.bin")).sha256 == sha(data)


async def test_put_of_an_async_stream(store):
    small, large = os.urandom(3000), os.urandom(PART_SIZE + 3 * MIB)  # one PUT / multipart
    info_small = await store.put("s/small", chunks_of(small, 1000))
    info_large = await store.put("s/large", chunks_of(large))
    assert (info_small.size, info_small.sha256) == (len(small), sha(small))
    assert (info_large.size, info_large.sha256) == (len(large), sha(large))
    assert await store.get("s/small") == small and await store.get("s/large") == large
    assert (await store.head("s/small")).sha256 == sha(small)
    assert (await store.head("s/large")).sha256 in (sha(large), None)  # S3 learns it too late


async def test_stream_with_a_known_sha256_records_it(store):
    data = os.urandom(PART_SIZE + MIB)
    await store.put("k/known", chunks_of(data), sha256=sha(data))
    assert (await store.head("k/known")).sha256 == sha(data)


async def test_put_file_streams_a_large_file_in_parts(store, tmp_path, monkeypatch):
    # Python memory in flight is about PART_SIZE * (MAX_CONCURRENCY + 1): shrink it
    # below the file size to show that the file is streamed, not loaded.
    monkeypatch.setattr(obstore_module, "PART_SIZE", 5 * MIB)
    monkeypatch.setattr(obstore_module, "MAX_CONCURRENCY", 1)
    path = tmp_path / "big.bin"
    hasher = hashlib.sha256()
    with path.open("wb") as fh:
        for _ in range(20):
            block = os.urandom(MIB)
            hasher.update(block)
            fh.write(block)
    tracemalloc.start()
    try:
        info = await store.put_file("files/big.bin", path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 14 * MIB, f"put_file held {peak / MIB:.1f} MiB of Python memory for a 20 MiB file"
    assert (info.size, info.sha256) == (20 * MIB, hasher.hexdigest())
    head = await store.head("files/big.bin")
    assert (head.size, head.sha256) == (20 * MIB, hasher.hexdigest())
    streamed = hashlib.sha256()
    async for chunk in store.stream("files/big.bin"):
        streamed.update(chunk)
    assert streamed.hexdigest() == hasher.hexdigest()


async def test_stream_yields_chunks(store):
    data = os.urandom(3 * MIB + 5)
    await store.put("st/x", data)
    chunks = [chunk async for chunk in store.stream("st/x", chunk_size=MIB)]
    assert len(chunks) >= 2 and all(isinstance(c, bytes) for c in chunks)
    assert b"".join(chunks) == data


async def test_get_range(store):
    data = bytes(range(256)) * 4
    await store.put("r/x", data)
    assert await store.get_range("r/x", 0, 10) == data[:10]
    assert await store.get_range("r/x", 500, 600) == data[500:600]
    assert await store.get_range("r/x", 1000, 1024) == data[1000:]
    assert await store.get_range("r/x", 1000, 5000) == data[1000:]  # cut at the end
    assert await store.get_range("r/x", 7, 7) == b""
    with pytest.raises(InvalidInput):
        await store.get_range("r/x", 10, 5)
    with pytest.raises(InvalidInput):
        await store.get_range("r/x", 2000, 3000)
    with pytest.raises(NotFound):
        await store.get_range("r/missing", 0, 1)


async def test_list_by_prefix_is_sorted(store):
    for key in ["b/2", "a/2", "ab/x", "a/10", "a/sub/3", "a/1"]:
        await store.put(key, key.encode())
    assert await keys(store, "a/") == ["a/1", "a/10", "a/2", "a/sub/3"]
    assert await keys(store, "a") == ["a/1", "a/10", "a/2", "a/sub/3", "ab/x"]
    assert await keys(store, "a/1") == ["a/1", "a/10"]
    assert await keys(store) == ["a/1", "a/10", "a/2", "a/sub/3", "ab/x", "b/2"]
    assert await keys(store, "zzz/") == []
    listed = {info.key: info for info in await store.list()}
    assert listed["a/10"].size == 4 and isinstance(listed["a/10"].last_modified, datetime)


async def test_head_and_exists(store):
    await store.put("h/x", b"12345")
    info = await store.head("h/x")
    assert info.key == "h/x" and info.size == 5 and info.etag
    assert isinstance(info.last_modified, datetime)
    assert await store.exists("h/x") and not await store.exists("h/y")


async def test_delete_and_delete_missing(store):
    await store.put("d/x", b"1")
    await store.delete("d/x")
    assert not await store.exists("d/x") and await keys(store) == []
    await store.delete("d/x")
    await store.delete("never/was")


async def test_missing_objects_raise_not_found(store):
    with pytest.raises(NotFound):
        await store.get("no/such")
    with pytest.raises(NotFound):
        await store.head("no/such")
    with pytest.raises(NotFound):
        _ = [chunk async for chunk in store.stream("no/such")]
    with pytest.raises(NotFound):
        await store.put_file("x", Path("/nonexistent/file"))


# ------------------------------------------------------------------ safety

UNSAFE = ["../x", "/abs", "a/../../b", "a\\b", "a\x00b", "a/./b", "a//b", "", "x/y#12"]


@pytest.mark.parametrize("key", UNSAFE, ids=repr)
async def test_unsafe_keys_are_refused_before_any_io(store, key, tmp_path):
    before = sorted(tmp_path.parent.rglob("*"))
    with pytest.raises(UnsafePath):
        await store.put(key, b"x")
    with pytest.raises(UnsafePath):
        await store.put_file(key, Path(__file__))
    for call in (store.get, store.head, store.exists, store.delete):
        with pytest.raises(UnsafePath):
            await call(key)
    with pytest.raises(UnsafePath):
        await store.get_range(key, 0, 1)
    with pytest.raises(UnsafePath):
        store.stream(key)
    assert sorted(tmp_path.parent.rglob("*")) == before
    assert await keys(store) == []


async def test_local_store_refuses_keys_that_resolve_outside_its_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    store = ObstoreStore.local(tmp_path / "root")
    (tmp_path / "root" / "link").symlink_to(outside)
    with pytest.raises(UnsafePath):
        await store.put("link/x", b"escape")
    assert list(outside.iterdir()) == []


# -------------------------------------------------------------- atomicity


async def test_failed_stream_leaves_nothing(store, s3_probe):
    async def failing(after: int) -> AsyncIterator[bytes]:
        sent = 0
        while sent < after:
            yield os.urandom(MIB)
            sent += MIB
        raise RuntimeError("source broke")

    for after in (2 * MIB, PART_SIZE + 2 * MIB):  # before and after multipart starts
        with pytest.raises(RuntimeError, match="source broke"):
            await store.put("atomic/x", failing(after))
    assert not await store.exists("atomic/x")
    assert await keys(store) == []
    s3_probe.assert_clean(store)


async def test_readers_never_see_a_partial_object(store):
    reached, go = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        for i in range(12):
            if i == 10:  # more than PART_SIZE sent: parts are uploaded / staged
                reached.set()
                await go.wait()
            yield b"x" * MIB

    await store.put("atomic/y", b"old version")
    task = asyncio.create_task(store.put("atomic/y", slow()))
    await asyncio.wait_for(reached.wait(), 10)
    await asyncio.sleep(0.2)
    assert await store.get("atomic/y") == b"old version"
    assert await keys(store, "atomic/") == ["atomic/y"] and (await store.head("atomic/y")).size == 11
    go.set()
    info = await task
    assert info.size == 12 * MIB and (await store.head("atomic/y")).size == 12 * MIB


async def test_failed_overwrite_keeps_the_old_object(store):
    await store.put("o/x", b"v1")

    async def failing() -> AsyncIterator[bytes]:
        yield os.urandom(PART_SIZE + MIB)
        raise RuntimeError("broke")

    with pytest.raises(RuntimeError):
        await store.put("o/x", failing())
    assert await store.get("o/x") == b"v1"


async def test_create_only_put_conflicts_with_an_existing_key(store, tmp_path):
    await store.put("c/x", b"first", overwrite=False)
    with pytest.raises(Conflict):
        await store.put("c/x", b"second", overwrite=False)
    with pytest.raises(Conflict):
        await store.put("c/x", chunks_of(os.urandom(PART_SIZE + MIB)), overwrite=False)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(PART_SIZE + MIB))
    with pytest.raises(Conflict):
        await store.put_file("c/x", big, overwrite=False)
    assert await store.get("c/x") == b"first"


async def test_wrong_expected_sha256_stores_nothing(store, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(PART_SIZE + MIB))
    with pytest.raises(IntegrityError):
        await store.put_file("i/big", big, sha256="0" * 64)
    with pytest.raises(IntegrityError):
        await store.put("i/small", b"abc", sha256="0" * 64)
    assert await keys(store) == []


# ------------------------------------------------------------ availability


async def test_s3_store_on_a_closed_port_builds_then_reports_unavailable():
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = ObstoreStore.s3("bucket", endpoint, "key", "secret", "us-east-1", timeout_s=2)
    for attempt in (
        store.check(),
        store.put("a", b"1"),
        store.get("a"),
        store.head("a"),
        store.list(),
        store.get_range("a", 0, 1),
        store.delete("a"),
    ):
        with pytest.raises(StoreUnavailable, match=endpoint.removeprefix("http://")):
            await attempt


async def test_local_check_fails_when_the_root_is_gone(tmp_path):
    store = ObstoreStore.local(tmp_path / "root")
    await store.check()
    (tmp_path / "root").rmdir()
    with pytest.raises(StoreUnavailable, match="root"):
        await store.check()


async def test_s3_bucket_is_created_on_first_write(s3_server: SeaweedS3Server):
    bucket = f"fresh-{uuid.uuid4().hex[:12]}"
    store = ObstoreStore.s3(bucket, s3_server.url, s3_server.access_key, s3_server.secret_key)
    await store.check()
    assert await store.list() == []
    await store.ensure_bucket()  # what the first write does (SeaweedFS would also auto-create)
    await store.ensure_bucket()  # idempotent
    assert _boto(s3_server).head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    await store.put("x", b"1")
    assert await keys(store) == ["x"]


async def test_s3_wrong_credentials_are_reported(s3_server, s3_bucket):
    store = ObstoreStore.s3(s3_bucket, s3_server.url, s3_server.access_key, "wrong-secret")
    with pytest.raises(StoreUnavailable, match="S3_SECRET_KEY"):
        await store.check()
    with pytest.raises(StoreUnavailable, match="S3_SECRET_KEY"):
        await store.head("x")


def test_store_from_settings_does_not_contact_anything(tmp_path):
    local = store_from_settings(StoreSettings(local_dir=tmp_path / "s"))
    assert local.url == (tmp_path / "s").resolve().as_uri() and (tmp_path / "s").is_dir()
    remote = store_from_settings(
        StoreSettings(
            s3_endpoint=f"http://127.0.0.1:{free_port()}",
            s3_access_key="k",
            s3_secret_key="s",
            s3_bucket="b-1",
        )
    )
    assert remote.url.endswith("/b-1")


# ---------------------------------------------------------------- helpers


def _boto(server: SeaweedS3Server) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )


class _S3Probe:
    """Backend-specific look behind the port: no staging files, no pending multipart uploads."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request, self.tmp_path = request, tmp_path

    def assert_clean(self, store: ObstoreStore) -> None:
        if store.url.startswith("file:"):
            assert [p for p in (self.tmp_path / "store").rglob("*") if p.is_file()] == []
            return
        server = self.request.getfixturevalue("s3_server")
        bucket = store.url.rsplit("/", 1)[1]
        assert _boto(server).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.fixture
def s3_probe(request, tmp_path):
    return _S3Probe(request, tmp_path)


async def test_consumed_file_is_stored_whole_and_create_only_is_kept(store, tmp_path):
    data = os.urandom(3 * MIB + 5)
    digest = hashlib.sha256(data).hexdigest()
    src = tmp_path / "verified.part"
    src.write_bytes(data)
    info = await store.put_file("moved/a.bin", src, sha256=digest, consume=True)
    assert (info.size, info.sha256) == (len(data), digest)
    assert await store.get("moved/a.bin") == data
    assert (await store.head("moved/a.bin")).size == len(data)
    if store.url.startswith("file://"):
        assert not src.exists()  # renamed into place, not copied
    other = tmp_path / "other.part"
    other.write_bytes(b"new")
    with pytest.raises(Conflict):
        await store.put_file("moved/a.bin", other, consume=True, overwrite=False)
    assert await store.get("moved/a.bin") == data
    assert await keys(store, "moved/") == ["moved/a.bin"]


@pytest.mark.parametrize("overwrite", [True, False])
async def test_a_consumed_file_lands_when_a_delete_empties_its_directory_meanwhile(tmp_path, monkeypatch, overwrite):
    """The local store removes a directory once its last object is deleted (``automatic_cleanup``). A delete in
    the same directory between ``put_file`` making the directory and renaming the file into it must not lose
    the file (a granule mirror deleting a corrupt file while storing a good one beside it did)."""
    store = ObstoreStore.local(tmp_path / "store")
    await store.put("day/corrupt.h5", b"bad")
    src = tmp_path / "good.part"
    src.write_bytes(b"good bytes")
    rename = os.replace if overwrite else os.link
    calls = []

    def racing(a, b, *args, **kw):  # the concurrent delete lands just before the first rename
        if not calls:
            calls.append(b)
            asyncio.run(store.delete("day/corrupt.h5"))
            assert not (tmp_path / "store" / "day").exists()
        return rename(a, b, *args, **kw)

    monkeypatch.setattr(obstore_module.os, "replace" if overwrite else "link", racing)
    info = await store.put_file("day/good.h5", src, consume=True, overwrite=overwrite)
    assert calls and info.size == 10
    assert await store.get("day/good.h5") == b"good bytes" and not src.exists()
    assert await keys(store, "day/") == ["day/good.h5"]


async def test_concurrent_puts_and_deletes_in_one_directory_lose_nothing(tmp_path):
    """Real threads: files renamed (and objects put) into a directory while other objects in it are deleted
    (and the directory removed whenever it empties) all arrive."""
    store = ObstoreStore.local(tmp_path / "store")
    for round_ in range(30):
        doomed = [f"d/{round_}/old-{i}" for i in range(4)]
        for k in doomed:
            await store.put(k, b"x")
        srcs = []
        for i in range(4):
            srcs.append(tmp_path / f"{round_}-{i}.part")
            srcs[-1].write_bytes(b"new %d" % i)
        await asyncio.gather(*(store.delete(k) for k in doomed),
                             *(store.put_file(f"d/{round_}/new-{i}", p, consume=True) for i, p in enumerate(srcs)),
                             *(store.put(f"d/{round_}/put-{i}", b"put %d" % i) for i in range(2)))
        assert await keys(store, f"d/{round_}/") == sorted(
            [f"d/{round_}/new-{i}" for i in range(4)] + [f"d/{round_}/put-{i}" for i in range(2)])
