"""BagIt bags (RFC 8493) written through a :class:`~earthkeep.store.base.Store`, one per dataset.

Layout under ``<prefix>/<dataset name>/``::

    bagit.txt                     BagIt-Version 1.0, UTF-8
    bag-info.txt                  Bagging-Date, Payload-Oxum, Source-Organization, External-Identifier ...
    manifest-sha256.txt           sha256 of every payload file
    tagmanifest-sha256.txt        sha256 of every tag file
    data/<asset file name>        the payload (written by the transfer engine)
    metadata/ckan.json            the dataset's CKAN metadata as the portal served it
    metadata/headers/<file>.json  the HTTP response headers each payload file came with

A bag grows as its dataset's assets arrive: each :meth:`BagWriter.add` rewrites
the manifests from what the store holds under ``data/`` (no hidden state), so a
bag is valid after every step and a crashed node resumes cleanly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from earthkeep import __version__
from earthkeep.store.base import Store

BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
SAFE = re.compile(r"[^A-Za-z0-9._-]+")
MANIFEST = "manifest-sha256.txt"
TAGMANIFEST = "tagmanifest-sha256.txt"


def bag_name(dataset: str) -> str:
    """A safe directory name for a dataset's bag."""
    name = SAFE.sub("_", dataset).strip("._")[:200]
    return name or "dataset"


def _encode_path(path: str) -> str:
    """RFC 8493 §2.1.3: percent-encode CR, LF and % in manifest paths."""
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _parse_manifest(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        digest, _, path = line.partition(" ")
        if digest and path:
            out[path.strip()] = digest
    return out


class BagWriter:
    """Adds payload files (already in the store) and their tag files to dataset bags."""

    def __init__(self, store: Store, prefix: str = "bags") -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self._locks: dict[str, asyncio.Lock] = {}

    def root(self, dataset: str) -> str:
        return f"{self.prefix}/{bag_name(dataset)}" if self.prefix else bag_name(dataset)

    def payload_key(self, dataset: str, filename: str) -> str:
        """Where the transfer engine should store a payload file."""
        return f"{self.root(dataset)}/data/{filename}"

    async def add(self, dataset: str, filename: str, sha256: str, *, metadata: Mapping[str, Any],
                  headers: Mapping[str, str], info: Mapping[str, str] | None = None) -> str:
        """Record one payload file (stored at :meth:`payload_key`) in its bag; returns the bag's root key."""
        root = self.root(dataset)
        lock = self._locks.setdefault(root, asyncio.Lock())
        async with lock:
            await self._put(root, "bagit.txt", BAGIT_TXT)
            await self._put(root, "metadata/ckan.json",
                            json.dumps(dict(metadata), indent=2, sort_keys=True, default=str).encode())
            await self._put(root, f"metadata/headers/{filename}.json",
                            json.dumps(dict(headers), indent=2, sort_keys=True).encode())
            manifest = await self._manifest(root)
            manifest[f"data/{filename}"] = sha256
            await self._write_manifests(root, manifest, metadata, info or {})
        return root

    async def _put(self, root: str, name: str, data: bytes) -> None:
        await self.store.put(f"{root}/{name}", data)

    async def _manifest(self, root: str) -> dict[str, str]:
        key = f"{root}/{MANIFEST}"
        if not await self.store.exists(key):
            return {}
        manifest = _parse_manifest((await self.store.get(key)).decode())
        present = {o.key[len(root) + 1:] for o in await self.store.list(f"{root}/data/")}
        return {p: d for p, d in manifest.items() if p in present}

    async def _write_manifests(self, root: str, manifest: dict[str, str], metadata: Mapping[str, Any],
                               info: Mapping[str, str]) -> None:
        sizes = {o.key[len(root) + 1:]: o.size for o in await self.store.list(f"{root}/data/")}
        lines = "".join(f"{d}  {_encode_path(p)}\n" for p, d in sorted(manifest.items()))
        await self._put(root, MANIFEST, lines.encode())
        oxum = f"{sum(sizes.get(p, 0) for p in manifest)}.{len(manifest)}"
        await self._put(root, "bag-info.txt", _bag_info(metadata, oxum, info).encode())
        tags = {}
        for o in await self.store.list(f"{root}/"):
            rel = o.key[len(root) + 1:]
            if rel.startswith("data/") or rel == TAGMANIFEST:
                continue
            tags[rel] = hashlib.sha256(await self.store.get(o.key)).hexdigest()
        text = "".join(f"{d}  {_encode_path(p)}\n" for p, d in sorted(tags.items()))
        await self._put(root, TAGMANIFEST, text.encode())


def _bag_info(metadata: Mapping[str, Any], oxum: str, extra: Mapping[str, str]) -> str:
    found = metadata.get("organization")
    org: dict[str, Any] = found if isinstance(found, dict) else {}
    fields = {
        "Source-Organization": str(org.get("title") or org.get("name") or "unknown"),
        "External-Identifier": str(metadata.get("id") or ""),
        "External-Description": str(metadata.get("title") or metadata.get("name") or ""),
        "Bagging-Date": datetime.now(UTC).date().isoformat(),
        "Bag-Software-Agent": f"earthkeep {__version__}",
        "Payload-Oxum": oxum,
        **extra,
    }
    return "".join(f"{k}: {' '.join(str(v).split())}\n" for k, v in fields.items() if v != "")
