"""Check that a stored granule is a readable HDF5 file (h5py walks its metadata)."""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING, Any

import h5py

from earthkeep.errors import IntegrityError

if TYPE_CHECKING:
    from earthkeep.store.base import Store

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
    """Raise :class:`IntegrityError` unless the object at ``key`` is a readable HDF5 file.

    The object is read once into memory (granules are tens of MB) and h5py opens it from
    there in a worker thread. An earlier version let h5py read ranges through the event
    loop from that thread, which could stall a mirror for a minute under load.
    """
    data = await store.get(key)
    if len(data) != size:
        raise IntegrityError(f"{key}: stored size {len(data)} differs from the verified size {size}")

    def run() -> int:
        with io.BytesIO(data) as fh:
            return _inspect(fh)

    try:
        return await asyncio.to_thread(run)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise IntegrityError(f"{key}: not a readable HDF5 file ({type(exc).__name__}: {exc})") from exc
