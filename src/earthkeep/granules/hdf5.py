"""Open a stored granule with h5py without copying it: reads go to the store in ranges."""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING, Any

import h5py

from earthkeep.errors import IntegrityError

if TYPE_CHECKING:
    from earthkeep.store.base import Store

READ_BLOCK = 1 << 20


class StoreRaw(io.RawIOBase):
    """A seekable, read-only file over one stored object (blocking; run it in a thread)."""

    def __init__(self, store: Store, key: str, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self._store, self._key, self._size, self._loop = store, key, size, loop
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        end = min(self._size, self._pos + len(buffer))
        if end <= self._pos:
            return 0
        fut = asyncio.run_coroutine_threadsafe(self._store.get_range(self._key, self._pos, end), self._loop)
        data = fut.result(timeout=60)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _inspect(fh: Any) -> int:
    """Open as HDF5 and walk every object's metadata; the number of datasets."""
    count = 0
    with h5py.File(fh, "r") as f:

        def visit(_name: str, obj: object) -> None:
            nonlocal count
            if isinstance(obj, h5py.Dataset):
                count += 1
                _meta = obj.shape, obj.dtype

        f.visititems(visit)
    return count


async def check_hdf5(store: Store, key: str, size: int) -> int:
    """Raise :class:`IntegrityError` unless the object at ``key`` is a readable HDF5 file."""
    loop = asyncio.get_running_loop()
    raw = StoreRaw(store, key, size, loop)

    def run() -> int:
        with io.BufferedReader(raw, buffer_size=READ_BLOCK) as fh:
            return _inspect(fh)

    try:
        return await asyncio.to_thread(run)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise IntegrityError(f"{key}: not a readable HDF5 file ({type(exc).__name__}: {exc})") from exc
