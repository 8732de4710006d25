"""The in-memory store keeps the ``Store`` port's promises (the embedded mode and tests rely on them)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from earthkeep.errors import Conflict, IntegrityError, InvalidInput, NotFound, UnsafePath
from earthkeep.store import ObjectInfo, Store
from earthkeep.store.memory import MemoryStore


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore("t")


def test_it_is_a_store():
    s = MemoryStore("x")
    assert isinstance(s, Store) and s.url == "memory://x"


async def test_put_returns_size_sha256_and_an_aware_time_and_get_returns_the_bytes(store):
    before = datetime.now(UTC)
    info = await store.put("a/b.bin", b"hello")
    assert (info.key, info.size, info.sha256, info.etag) == ("a/b.bin", 5, sha(b"hello"), sha(b"hello")[:32])
    assert info.last_modified is not None and info.last_modified >= before and info.last_modified.tzinfo is UTC
    assert await store.get("a/b.bin") == b"hello"
    assert await store.head("a/b.bin") == info


async def test_a_stream_of_chunks_is_stored_whole(store):
    info = await store.put("s", chunks(b"ab", bytearray(b"cd"), memoryview(b"e")))
    assert (info.size, info.sha256) == (5, sha(b"abcde"))
    assert await store.get("s") == b"abcde"


async def test_overwrite_false_keeps_the_first_object(store):
    await store.put("k", b"one")
    with pytest.raises(Conflict, match="'k' exists already in memory://t"):
        await store.put("k", b"two", overwrite=False)
    assert await store.get("k") == b"one"
    await store.put("k", b"three")
    assert await store.get("k") == b"three"


async def test_missing_objects_are_not_found_naming_key_and_store(store):
    for call in (store.get("nope"), store.head("nope"), store.get_range("nope", 0, 1)):
        with pytest.raises(NotFound, match="object 'nope' does not exist in memory://t"):
            await call
    with pytest.raises(NotFound):
        store.stream("nope")
    assert await store.exists("nope") is False
    await store.delete("nope")  # deleting a missing key is not an error


async def test_ranges_are_half_open_and_checked(store):
    await store.put("r", b"0123456789")
    assert await store.get_range("r", 2, 5) == b"234"
    assert await store.get_range("r", 0, 10) == b"0123456789"
    assert await store.get_range("r", 10, 10) == b""
    assert await store.get_range("r", 8, 99) == b"89"  # past the end: what there is
    for start, end in ((-1, 2), (5, 4), (11, 12)):
        with pytest.raises(InvalidInput, match=re.escape(f"range {start}..{end} is outside object 'r' of 10 bytes")):
            await store.get_range("r", start, end)


async def test_stream_yields_chunks_of_the_asked_size(store):
    await store.put("c", b"x" * 10)
    assert [len(c) async for c in store.stream("c", chunk_size=4)] == [4, 4, 2]
    await store.put("empty", b"")
    assert [c async for c in store.stream("empty")] == []


async def test_list_is_sorted_by_key_and_filtered_by_prefix(store):
    for key in ("b/2", "a/1", "b/1", "ab/x", "c"):
        await store.put(key, key.encode())
    assert [i.key for i in await store.list()] == ["a/1", "ab/x", "b/1", "b/2", "c"]
    assert [i.key for i in await store.list("b/")] == ["b/1", "b/2"]
    assert [i.key for i in await store.list("a")] == ["a/1", "ab/x"]  # a prefix of the key, not a directory
    assert await store.list("zzz/") == []
    assert all(isinstance(i, ObjectInfo) and i.size == len(i.key) for i in await store.list())


async def test_delete_removes_one_object(store):
    await store.put("d/1", b"1")
    await store.put("d/2", b"2")
    await store.delete("d/1")
    assert [await store.exists("d/1"), await store.exists("d/2")] == [False, True]


async def test_put_file_checks_the_expected_sha256(store, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"payload")
    info = await store.put_file("f", path, sha256=sha(b"payload").upper())
    assert (info.size, info.sha256) == (7, sha(b"payload"))
    with pytest.raises(IntegrityError, match=r"sha256 of .* differs from the expected"):
        await store.put_file("g", path, sha256="0" * 64)
    assert not await store.exists("g")
    with pytest.raises(NotFound, match="does not exist"):
        await store.put_file("h", tmp_path / "missing.bin")
    with pytest.raises(InvalidInput, match="cannot read"):
        await store.put_file("h", tmp_path)  # a directory
    assert path.exists()  # consume=False (the default) leaves the file


@pytest.mark.parametrize("key", ["../x", "/abs", "a\\b", "a\x00", "a//b", ""])
async def test_every_operation_refuses_an_unsafe_key_before_touching_anything(store, key, tmp_path):
    await store.put("safe", b"s")
    path = tmp_path / "f"
    path.write_bytes(b"f")
    calls = [store.put(key, b"x"), store.put_file(key, path), store.get(key), store.head(key),
             store.exists(key), store.delete(key), store.get_range(key, 0, 1)]
    for call in calls:
        with pytest.raises(UnsafePath):
            await call
    with pytest.raises(UnsafePath):
        store.stream(key)
    assert [i.key for i in await store.list()] == ["safe"]


async def test_stores_do_not_share_objects():
    a, b = MemoryStore("a"), MemoryStore("b")
    await a.put("k", b"a")
    assert await b.exists("k") is False
    await a.check()
