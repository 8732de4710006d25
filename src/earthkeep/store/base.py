"""The ``Store`` port: what domain code may ask of an object store.

Every adapter guarantees:

* ``put``/``put_file`` are atomic: a reader sees either no object or the whole
  object, never a partial one; the sha256 of the bytes is computed while writing
  and returned.
* keys are relative, ``/``-separated and checked by :func:`earthkeep.store.keys.safe_key`;
  an unsafe key raises :class:`earthkeep.errors.UnsafePath` before any I/O.
* a missing key raises :class:`earthkeep.errors.NotFound`; an unreachable
  backend raises :class:`earthkeep.errors.StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ObjectInfo:
    """What is known of one stored object."""

    key: str
    size: int
    sha256: str | None = None
    last_modified: datetime | None = None
    etag: str | None = None


@runtime_checkable
class Store(Protocol):
    """Asynchronous object store port (local files, S3-compatible servers)."""

    url: str

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        content_type: str | None = None,
        overwrite: bool = True,
    ) -> ObjectInfo:
        """Write ``data`` under ``key`` atomically; return size and sha256."""
        ...

    async def put_file(
        self, key: str, path: Path, *, content_type: str | None = None, overwrite: bool = True,
        sha256: str | None = None, consume: bool = False,
    ) -> ObjectInfo:
        """Upload a local file atomically (multipart for large files).

        ``sha256`` is the digest the caller already verified (spares a hashing pass; a
        mismatch raises :class:`IntegrityError`). With ``consume=True`` the caller gives
        the file up: a local store on the same file system may rename it into place
        instead of copying it.
        """
        ...

    async def get(self, key: str) -> bytes:
        """Return the whole object."""
        ...

    def stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Yield the object in chunks without holding it in memory."""
        ...

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        """Return bytes ``start`` .. ``end - 1`` (half-open) of the object."""
        ...

    async def head(self, key: str) -> ObjectInfo:
        """Return size (and what else is known) of one object."""
        ...

    async def exists(self, key: str) -> bool:
        """True when ``key`` exists."""
        ...

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""
        ...

    async def delete(self, key: str) -> None:
        """Remove one object; deleting a missing key is not an error."""
        ...

    async def check(self) -> None:
        """Raise :class:`StoreUnavailable` when the backend cannot be reached."""
        ...
