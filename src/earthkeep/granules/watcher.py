"""Files other tools drop into a directory are catalogued and announced like mirrored ones.

watchdog reports closed-after-write and moved-in files (trollstalker's
``IN_CLOSE_WRITE, IN_MOVED_TO``); files already there at start are taken too.
Each file's name must be a VIIRS SDR name, it must open with h5py, and it is
copied into the store before its item and ``file`` message are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import structlog
from watchdog.events import FileClosedEvent, FileCreatedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from earthkeep.errors import IntegrityError, InvalidInput, UnsafePath
from earthkeep.granules.messages import granule_uri
from earthkeep.granules.records import catalogued, record_granule
from earthkeep.sources.gina import parse_sdr_name, store_key

if TYPE_CHECKING:
    from earthkeep.granules.config import GranuleConfig
    from earthkeep.runtime import Services

log = structlog.get_logger(__name__)
SOURCE = "watch"


def _digests(path: Path) -> tuple[str, str, int]:
    sha, md5, n = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
            n += len(chunk)
    return sha.hexdigest(), md5.hexdigest(), n


def _check_local_hdf5(path: Path) -> None:
    try:
        with h5py.File(path, "r") as f:
            f.visit(lambda _: None)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise IntegrityError(f"{path.name}: not a readable HDF5 file ({exc})") from exc


async def ingest_file(services: Services, cfg: GranuleConfig, path: Path) -> dict[str, Any] | None:
    """Catalogue one dropped file; None when it is skipped (not an SDR name, already there, unreadable)."""
    try:
        sdr = parse_sdr_name(path.name)
    except (InvalidInput, UnsafePath) as exc:
        log.info("granules.watch_ignored", path=str(path), reason=str(exc))
        return None
    with services.sessions() as s:
        if catalogued(s, [path.name]):
            return None
    try:
        await asyncio.to_thread(_check_local_hdf5, path)
    except IntegrityError as exc:
        log.warning("granules.watch_bad_file", path=str(path), error=str(exc))
        return None
    sha, md5, size = await asyncio.to_thread(_digests, path)
    key = store_key(sdr, path.name)
    await services.store.put_file(key, path, content_type="application/x-hdf5")
    uri = granule_uri(services.store, key, path.name, cfg.viirs.uri_base)

    def record() -> dict[str, Any]:
        with services.sessions.begin() as s:
            return record_granule(s, sdr=sdr, name=path.name, key=key, size=size, sha256=sha, md5=md5,
                                  uri=uri, subject=cfg.viirs.subject, source=SOURCE)

    return await asyncio.to_thread(record)


async def _settled(path: Path, quiet_s: float = 0.3, limit_s: float = 60.0) -> bool:
    """Wait until nobody writes ``path`` (same size and mtime for ``quiet_s``); False if it vanished."""
    last = None
    for _ in range(int(limit_s / quiet_s)):
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        now = (st.st_size, st.st_mtime_ns)
        if now == last:
            return True
        last = now
        await asyncio.sleep(quiet_s)
    return True


class _Handler(FileSystemEventHandler):
    """Closed-after-write and moved-in files; a file moved in from an unwatched directory is
    reported by inotify as *created* (no close follows), so created files are taken too once
    their size has settled."""

    def __init__(self, push: Callable[[tuple[Path, bool]], object]) -> None:
        self._push = push

    def on_closed(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileClosedEvent) and not event.is_directory:
            self._push((Path(str(event.src_path)), False))

    def on_created(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileCreatedEvent) and not event.is_directory:
            self._push((Path(str(event.src_path)), True))

    def on_moved(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileMovedEvent) and not event.is_directory:
            self._push((Path(str(event.dest_path)), False))


class DirectoryWatcher:
    """Watch ``directory``; ``on_stored`` is called with each new file's message data."""

    def __init__(self, services: Services, cfg: GranuleConfig, directory: Path,
                 on_stored: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None) -> None:
        self.services, self.cfg, self.directory, self.on_stored = services, cfg, Path(directory), on_stored
        self._queue: asyncio.Queue[tuple[Path, bool]] = asyncio.Queue()
        self._observer: Any = None
        self._task: asyncio.Task[None] | None = None
        self.stored: list[str] = []

    async def start(self) -> DirectoryWatcher:
        loop = asyncio.get_running_loop()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._observer = Observer()
        self._observer.schedule(_Handler(lambda p: loop.call_soon_threadsafe(self._queue.put_nowait, p)),
                                str(self.directory), recursive=False)
        self._observer.start()
        for p in sorted(self.directory.iterdir()):
            if p.is_file():
                self._queue.put_nowait((p, True))
        self._task = asyncio.create_task(self._work())
        log.info("granules.watching", directory=str(self.directory))
        return self

    async def _work(self) -> None:
        while True:
            path, settle = await self._queue.get()
            if settle and not await _settled(path):
                continue
            try:
                data = await ingest_file(self.services, self.cfg, path)
            except Exception as exc:  # one bad file must not stop the watcher
                log.error("granules.watch_failed", path=str(path), error=repr(exc))
                continue
            if data is not None:
                self.stored.append(path.name)
                if self.on_stored is not None:
                    out = self.on_stored(data)
                    if asyncio.iscoroutine(out):
                        await out

    async def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
