"""What a remote file is: size, byte-range support, ETag and Last-Modified.

``HEAD`` first; when it is refused (S3 pre-signed GET URLs answer 403, some
servers 405) or does not say whether ranges work, a one-byte
``Range: bytes=0-0`` GET settles it. A request whose ranges are known to lie
inside the file needs no probe: :func:`remote_from_range_answer` takes the same
facts from the first answer to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from earthkeep.errors import IntegrityError, InvalidInput
from earthkeep.transfer.http import FatalHTTPError, RetryableError, check_status
from earthkeep.transfer.ranges import ByteRange, format_range, parse_content_range

HEAD_REFUSED = frozenset({400, 403, 405, 501})

Opener = Callable[..., contextlib.AbstractAsyncContextManager[httpx.Response]]


@dataclass(frozen=True)
class RemoteInfo:
    """What the server told us about one URL."""

    url: str
    size: int | None
    ranges: bool
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


async def remote_info(
    opener: Opener, url: str, headers: Mapping[str, str], stats: Any, *, untrusted: bool
) -> RemoteInfo:
    """Ask the server about ``url`` with ``opener`` (the engine's request context manager)."""
    async with opener("HEAD", url, headers, stats, untrusted=untrusted) as response:
        if response.status_code not in HEAD_REFUSED:
            check_status(response, url)
            info = _from_answer(url, response, ranges=_accepts_ranges(response))
            if info.size is not None and _says_ranges(response):
                return info
    probe = {**headers, "range": "bytes=0-0"}
    async with opener("GET", url, probe, stats, untrusted=untrusted) as response:
        if response.status_code == 416:
            return _empty_or_error(url, response)
        check_status(response, url)
        if response.status_code != 206:
            return _from_answer(url, response, ranges=False)
        try:
            cr = parse_content_range(response.headers.get("content-range", ""))
        except InvalidInput as exc:
            raise RetryableError(f"{url}: {exc}") from exc
        return _from_answer(url, response, ranges=True, size=cr.total)


def remote_from_range_answer(url: str, response: httpx.Response, ranges: Sequence[ByteRange]) -> RemoteInfo | None:
    """What the answer to a ranges request that was sent without a probe says of the remote.

    A ``206`` gives the remote's size (``Content-Range`` total), ETag and
    Last-Modified; a ``416``, or a size that some range ends past, means the
    ranges do not match the file (:class:`IntegrityError`: a wrong inventory or
    a changed remote); a ``200`` means the server ignores ranges, which is
    definitive as when a probe says so (:class:`FatalHTTPError`). Any other
    status gives ``None``: the caller's status check decides.
    """
    status = response.status_code
    if status == 416:
        raise IntegrityError(
            f"{url}: the server has no bytes at {format_range(list(ranges))} "
            f"(416, Content-Range {response.headers.get('content-range', '?')}); the ranges do not match the file"
        )
    if status == 200:
        raise FatalHTTPError(f"{url}: the server does not answer byte-range requests; cannot fetch ranges")
    if status != 206:
        return None
    try:
        size = parse_content_range(response.headers.get("content-range", "")).total
    except InvalidInput as exc:
        raise RetryableError(f"{url}: {exc}") from exc
    past = [r for r in ranges if size is not None and r[1] is not None and r[1] >= size]
    if past:
        raise IntegrityError(
            f"{url}: the remote has {size} bytes but range {past[0]} ends past them; the ranges do not match the file"
        )
    return _from_answer(url, response, ranges=True, size=size)


def _accepts_ranges(response: httpx.Response) -> bool:
    return "bytes" in response.headers.get("accept-ranges", "").lower()


def _says_ranges(response: httpx.Response) -> bool:
    """True when Accept-Ranges settles the question (``bytes`` or ``none``)."""
    value = response.headers.get("accept-ranges", "").lower()
    return "bytes" in value or value.strip() == "none"


def _identity_length(response: httpx.Response) -> int | None:
    encoding = response.headers.get("content-encoding", "identity").lower()
    length = response.headers.get("content-length")
    if encoding != "identity" or length is None or not length.strip().isdigit():
        return None
    return int(length)


def _from_answer(url: str, response: httpx.Response, *, ranges: bool, size: int | None = -1) -> RemoteInfo:
    return RemoteInfo(
        url=url,
        size=_identity_length(response) if size == -1 else size,
        ranges=ranges,
        etag=response.headers.get("etag"),
        last_modified=response.headers.get("last-modified"),
        content_type=response.headers.get("content-type"),
        headers=dict(response.headers),
    )


def _empty_or_error(url: str, response: httpx.Response) -> RemoteInfo:
    """``416`` to ``bytes=0-0`` means an empty file (``Content-Range: bytes */0``)."""
    try:
        cr = parse_content_range(response.headers.get("content-range", ""))
    except InvalidInput as exc:
        raise RetryableError(f"{url}: 416 to bytes=0-0 without a usable Content-Range") from exc
    if cr.total != 0:
        raise RetryableError(f"{url}: 416 to bytes=0-0 although the file has {cr.total} bytes")
    return _from_answer(url, response, ranges=True, size=0)
