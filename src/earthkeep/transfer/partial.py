"""The partial file of one download and its JSON sidecar (what is already on disk).

``<work_dir>/<name>.part`` receives the bytes at their final offsets;
``<work_dir>/<name>.part.json`` records which output intervals are complete and
which remote object they came from (URL, ranges, size, ETag, Last-Modified).
A later run with the same identity resumes; any other identity starts afresh.
An exclusive ``flock`` keeps two transfers from writing the same partial file.

Blocking file work runs in threads; :meth:`PartialFile.close` waits for every
thread it started, so a cancelled download never leaves a write behind that
could land in a reused file descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from earthkeep.errors import Conflict
from earthkeep.transfer.ranges import Coverage

log = structlog.get_logger(__name__)

SIDECAR_VERSION = 1
HASH_CHUNK = 1 << 20
IOV_MAX = 512
T = TypeVar("T")


class Hasher(Protocol):
    """What :mod:`hashlib` objects offer."""

    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


class PartialFile:
    """An open partial file, its coverage and its sidecar. Create with :meth:`open`."""

    def __init__(self, path: Path, fd: int, identity: Mapping[str, Any], coverage: Coverage) -> None:
        self.path = path
        self.sidecar = path.with_name(path.name + ".json")
        self.identity = dict(identity)
        self.coverage = coverage
        self.resumed = coverage.total()
        self._fd: int | None = fd
        self._pending: set[asyncio.Future[Any]] = set()

    @staticmethod
    def exists(work_dir: Path, name: str) -> bool:
        """True when an earlier run left ``work_dir/name.part`` (or its sidecar)."""
        path = work_dir / f"{name}.part"
        return path.exists() or path.with_name(path.name + ".json").exists()

    @classmethod
    async def open(cls, work_dir: Path, name: str, identity: Mapping[str, Any]) -> PartialFile:
        """Open (or create) ``work_dir/name.part``; keep its coverage only if ``identity`` matches."""
        opening = asyncio.ensure_future(asyncio.to_thread(cls._open_sync, work_dir, name, identity))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await (await opening).close(save=False)  # never leave the file open and locked
            raise

    @classmethod
    def _open_sync(cls, work_dir: Path, name: str, identity: Mapping[str, Any]) -> PartialFile:
        work_dir.mkdir(parents=True, exist_ok=True)
        identity = json.loads(json.dumps(identity, sort_keys=True))
        path = work_dir / f"{name}.part"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise Conflict(f"another transfer is writing {path}; wait for it to finish") from exc
        size = os.fstat(fd).st_size
        coverage = _load_coverage(path.with_name(path.name + ".json"), identity, size)
        if coverage.total() == 0:
            if size:  # not on an empty file: ext4 takes "truncated to 0, then written" for a file
                # being replaced and flushes it to disk on close (auto_da_alloc), 30-60 ms per 256 MiB
                os.ftruncate(fd, 0)
        else:
            log.info("transfer.resume", path=str(path), bytes_on_disk=coverage.total())
        return cls(path, fd, identity, coverage)

    @property
    def fd(self) -> int:
        """The open file descriptor (``ValueError`` once closed)."""
        if self._fd is None:
            raise ValueError(f"partial file {self.path} is closed")
        return self._fd

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in a thread that :meth:`close` will wait for, even if we are cancelled."""
        fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        return await asyncio.shield(fut)

    async def write(self, offset: int, buffers: Sequence[bytes | memoryview]) -> None:
        """Write ``buffers`` one after the other from ``offset`` and mark them covered."""
        await self._run(_pwrite_all, self.fd, buffers, offset)
        self.coverage.add(offset, offset + sum(len(b) for b in buffers))

    async def set_size(self, size: int) -> None:
        """Make the file exactly ``size`` bytes long (sparse where not yet written)."""
        await self._run(os.ftruncate, self.fd, size)

    async def size(self) -> int:
        """Current length of the file on disk."""
        return (await self._run(os.fstat, self.fd)).st_size

    async def restart(self) -> None:
        """Forget everything written so far (the server cannot resume)."""
        self.coverage = Coverage()
        await self._run(os.ftruncate, self.fd, 0)
        self.save()

    async def hash_range(self, start: int, stop: int, hashers: Sequence[Hasher]) -> None:
        """Feed bytes ``[start, stop)`` of the file to every hasher, in order."""
        await self._run(_hash_range, self.fd, start, stop, hashers)

    def save(self) -> None:
        """Write the sidecar atomically (temporary file, then rename)."""
        doc = {"version": SIDECAR_VERSION, "identity": self.identity, "done": self.coverage.intervals()}
        tmp = self.sidecar.with_name(self.sidecar.name + ".tmp")
        tmp.write_text(json.dumps(doc, sort_keys=True))
        os.replace(tmp, self.sidecar)

    async def close(self, *, save: bool = True) -> None:
        """Wait for pending threads, save the sidecar (unless told not to) and close the file."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        if self._fd is None:
            return
        if save:
            self.save()
        os.close(self._fd)
        self._fd = None

    async def remove(self) -> None:
        """Close and delete the partial file and its sidecar."""
        await self.close(save=False)
        if self.path.exists():
            await asyncio.to_thread(_unlink, self.path, self.sidecar)  # freeing a big file takes a while
        else:  # handed over: only the small sidecar is left, not worth a thread hop
            _unlink(self.sidecar)

    async def aclose_on_error(self, exc: BaseException) -> None:
        """Keep the partial file for a later resume, logging how much is kept."""
        await self.close()
        log.info(
            "transfer.partial_kept",
            path=str(self.path),
            bytes_on_disk=self.coverage.total(),
            error=type(exc).__name__,
        )


def _load_coverage(sidecar: Path, identity: Mapping[str, Any], file_size: int) -> Coverage:
    try:
        doc = json.loads(sidecar.read_text())
    except (FileNotFoundError, ValueError):
        return Coverage()
    if not isinstance(doc, dict) or doc.get("version") != SIDECAR_VERSION or doc.get("identity") != identity:
        log.info("transfer.partial_discarded", sidecar=str(sidecar), reason="remote or request changed")
        return Coverage()
    try:
        coverage = Coverage((int(a), int(b)) for a, b in doc.get("done", []))
    except (TypeError, ValueError):
        return Coverage()
    intervals = coverage.intervals()
    if intervals and intervals[-1][1] > file_size:
        return Coverage()
    return coverage


def _unlink(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _pwrite_all(fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> None:
    total = sum(len(b) for b in buffers)
    written = os.pwritev(fd, buffers, offset) if 1 < len(buffers) <= IOV_MAX else 0
    if written == total:
        return
    view = memoryview(buffers[0] if len(buffers) == 1 else b"".join(buffers))[written:]
    offset += written
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _hash_range(fd: int, start: int, stop: int, hashers: Sequence[Hasher]) -> None:
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    pos = start
    while pos < stop:
        n = os.preadv(fd, [view[: min(HASH_CHUNK, stop - pos)]], pos)
        if n <= 0:
            raise OSError(f"partial file ended at {pos}, before {stop}")
        for h in hashers:
            h.update(view[:n])
        pos += n
