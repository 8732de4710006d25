"""Where the transfer engine hands fetched GRIB files before they are checked: a local directory.

Only :meth:`StagingDir.put_file` is used by the engine. It moves the verified
partial file into place (no copy, no second hash: the engine computed the
sha256 while downloading), so a file is decoded and checked on local disk and
only then copied into the real store.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from earthkeep.store.base import ObjectInfo
from earthkeep.store.keys import safe_key


class StagingDir:
    """A write-only local landing area for the engine (not a full :class:`~earthkeep.store.base.Store`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = self.root.as_uri()

    def path(self, key: str) -> Path:
        return self.root / safe_key(key)

    async def put_file(self, key: str, path: Path, *, content_type: str | None = None, overwrite: bool = True,
                       sha256: str | None = None, consume: bool = True) -> ObjectInfo:
        """Move ``path`` to ``key`` (same file system: an atomic rename; the caller always gives it up)."""
        target = self.path(key)
        await asyncio.to_thread(_move, Path(path), target)
        return ObjectInfo(key=key, size=target.stat().st_size, sha256=sha256)


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
