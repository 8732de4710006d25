"""An in-memory :class:`~earthkeep.store.base.Store`: for tests and throw-away embedded runs.

Objects live in a dict; a write builds the whole value first and then swaps it
in, so readers see the old object or the new one, never a part. Nothing
survives the process.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from earthkeep.errors import Conflict, IntegrityError, InvalidInput, NotFound
from earthkeep.store.base import ObjectInfo
from earthkeep.store.keys import safe_key, safe_prefix


class MemoryStore:
    """Implements the whole ``Store`` port with a dict of ``key -> (bytes, ObjectInfo)``."""

    def __init__(self, name: str = "default") -> None:
        self.url = f"memory://{name}"
        self._objects: dict[str, tuple[bytes, ObjectInfo]] = {}

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        content_type: str | None = None,
        overwrite: bool = True,
    ) -> ObjectInfo:
        """Store ``data`` (bytes or an async iterable of chunks) under ``key``."""
        key = safe_key(key)
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
        else:
            raw = b"".join([bytes(chunk) async for chunk in data])
        return self._commit(key, raw, overwrite)

    async def put_file(
        self, key: str, path: Path, *, content_type: str | None = None, overwrite: bool = True,
        sha256: str | None = None, consume: bool = False,
    ) -> ObjectInfo:
        """Read the local file at ``path`` and store it under ``key`` (``consume`` changes nothing here)."""
        key = safe_key(key)
        try:
            raw = await asyncio.to_thread(Path(path).read_bytes)
        except FileNotFoundError as exc:
            raise NotFound(f"put_file: local file {path} does not exist") from exc
        except OSError as exc:
            raise InvalidInput(f"put_file: cannot read {path}: {exc}") from exc
        if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256.lower():
            raise IntegrityError(f"put_file {key!r}: sha256 of {path} differs from the expected {sha256}")
        return self._commit(key, raw, overwrite)

    def _commit(self, key: str, raw: bytes, overwrite: bool) -> ObjectInfo:
        if not overwrite and key in self._objects:
            raise Conflict(f"object {key!r} exists already in {self.url}")
        digest = hashlib.sha256(raw).hexdigest()
        info = ObjectInfo(key=key, size=len(raw), sha256=digest, last_modified=datetime.now(UTC), etag=digest[:32])
        self._objects[key] = (raw, info)
        return info

    def _entry(self, key: str) -> tuple[bytes, ObjectInfo]:
        key = safe_key(key)
        try:
            return self._objects[key]
        except KeyError:
            raise NotFound(f"object {key!r} does not exist in {self.url}") from None

    async def get(self, key: str) -> bytes:
        """The whole object."""
        return self._entry(key)[0]

    def stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The object in chunks of ``chunk_size`` bytes."""
        raw = self._entry(key)[0]

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(raw), chunk_size):
                yield raw[i : i + chunk_size]

        return chunks()

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` .. ``end - 1`` of the object."""
        raw = self._entry(key)[0]
        if start < 0 or end < start or start > len(raw):
            raise InvalidInput(f"range {start}..{end} is outside object {key!r} of {len(raw)} bytes")
        return raw[start:end]

    async def head(self, key: str) -> ObjectInfo:
        """Size, sha256, time and ETag of one object."""
        return replace(self._entry(key)[1])

    async def exists(self, key: str) -> bool:
        """True when ``key`` exists."""
        return safe_key(key) in self._objects

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""
        prefix = safe_prefix(prefix)
        return [info for key, (_, info) in sorted(self._objects.items()) if key.startswith(prefix)]

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        self._objects.pop(safe_key(key), None)

    async def check(self) -> None:
        """Always reachable."""
