"""What a source asks of the engine (:class:`TransferRequest`) and what it gets back.

Also the pure rules that tie a request to its partial file (name, identity)
and to the bytes received (expected size, checksums).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from earthkeep.errors import IntegrityError, InvalidInput, TransferFailed
from earthkeep.store.base import ObjectInfo
from earthkeep.transfer.ranges import ByteRange, Span, layout

if TYPE_CHECKING:
    from earthkeep.transfer.probe import RemoteInfo  # httpx behind it; sources import this module


@dataclass(frozen=True)
class TransferRequest:
    """What to fetch and where to keep it.

    ``ranges`` (inclusive ``(start, end)``, ``end=None`` to the end) make the stored
    object the concatenation of those ranges, in the order given; neighbours at
    most ``merge_gap`` bytes apart are fetched in one request. ``size``, ``sha256``
    and ``md5`` describe the stored object (after ranges) and are verified when
    given. ``untrusted=True`` marks a user-supplied URL: it and every redirect are
    checked with :func:`earthkeep.transfer.urls.check_url`.

    ``probe=False`` lets the engine skip its ``HEAD`` when nothing depends on
    it: for ``ranges`` that are all closed and known to lie inside the file
    (taken from its inventory), the first ``206`` tells the size, and a range
    that does not fit raises :class:`~earthkeep.errors.IntegrityError`; a whole
    file is fetched with one ``GET`` and restarted from its first byte after a
    failure. An open-ended range, or a partial file left by an earlier run,
    still gets its probe.
    """

    url: str
    key: str
    ranges: Sequence[ByteRange] | None = None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    untrusted: bool = False
    merge_gap: int = 0
    probe: bool = True


@dataclass(frozen=True)
class TransferResult:
    """One stored object and how it was fetched.

    ``attempts`` counts HTTP requests (probe included), ``retries`` the failed
    ones that were repeated, ``fetched`` the body bytes received in this run and
    ``resumed`` the bytes an earlier, interrupted run had already written.
    """

    key: str
    size: int
    sha256: str | None
    md5: str | None
    url: str
    headers: Mapping[str, str]
    attempts: int
    elapsed: float
    fetched: int = 0
    resumed: int = 0
    retries: int = 0
    stored: ObjectInfo | None = None


def spans_for(req: TransferRequest, remote: RemoteInfo) -> list[Span]:
    """Where the remote's bytes go in the output file (see :func:`~earthkeep.transfer.ranges.layout`)."""
    if req.ranges and not remote.ranges:
        raise TransferFailed(f"{req.url}: the server does not answer byte-range requests; cannot fetch ranges")
    try:
        return layout(req.ranges, remote.size)
    except InvalidInput as exc:
        raise InvalidInput(f"{req.url}: {exc}") from exc


def check_announced_size(req: TransferRequest, total: int | None) -> None:
    """Fail before downloading when the server announces another size than expected."""
    if req.size is not None and total is not None and req.size != total:
        raise IntegrityError(f"{req.url}: expected {req.size} bytes but the server announces {total}")


def check_received(req: TransferRequest, total: int, digests: Mapping[str, str]) -> None:
    """Raise :class:`IntegrityError` when ``total`` or a digest differs from what ``req`` expects."""
    if req.size is not None and req.size != total:
        raise IntegrityError(f"{req.url}: expected {req.size} bytes, received {total}")
    for name, expected in (("sha256", req.sha256), ("md5", req.md5)):
        if expected is not None and digests.get(name) != expected.lower():
            raise IntegrityError(f"{req.url}: {name} mismatch: expected {expected}, got {digests.get(name)}")


def algorithms(req: TransferRequest) -> list[str]:
    """Hashes to compute while downloading: sha256 always, md5 when it is to be verified.

    The store takes the sha256 of the file it is handed (``put_file(sha256=...)``)
    and skips its own hashing pass, which would start only after the download.
    """
    return ["sha256", "md5"] if req.md5 else ["sha256"]


def partial_name(req: TransferRequest) -> str:
    """File name (without suffix) of the request's partial file under the work directory."""
    ident = json.dumps({"url": req.url, "key": req.key, "ranges": [list(r) for r in req.ranges or ()]})
    return hashlib.sha256(ident.encode()).hexdigest()[:40]


def identity(req: TransferRequest, remote: RemoteInfo) -> dict[str, Any]:
    """What must not change between an interrupted run and its resume."""
    return {
        "url": req.url,
        "ranges": [list(r) for r in req.ranges or ()],
        "remote_size": remote.size,
        "etag": remote.etag,
        "last_modified": remote.last_modified,
    }
