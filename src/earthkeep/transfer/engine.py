"""The transfer engine: every source's downloads go through :class:`TransferEngine`.

One :meth:`TransferEngine.fetch` call turns a :class:`TransferRequest` into one
stored object:

1. **probe** the remote (``HEAD``, else a ``Range: bytes=0-0`` GET) for its size,
   byte-range support, ETag and Last-Modified; a request with ``probe=False``
   skips this when nothing depends on it (closed ranges known to lie inside the
   file, or a whole file fetched without resume), and the first answer tells
   instead (see :func:`~earthkeep.transfer.probe.remote_from_range_answer`);
2. **plan** what is missing from the partial file under ``settings.work_dir``
   (nothing on a fresh start, less after an interruption) as few long range
   requests run by ``settings.segments`` workers at once: one long piece each,
   then one short piece each for the last sixth
   (:func:`~earthkeep.transfer.plan.plan_segments`); a server without ranges or
   size gets one plain stream, resumed with ``Range: bytes=N-`` when it can;
3. **fetch** with at most ``settings.per_host`` requests in flight per host, retrying
   5xx, 429 (``Retry-After``), timeouts, resets, short bodies and 200-for-Range
   answers with exponential backoff and jitter; an attempt that brought at least
   1 MiB does not use up the retry budget;
4. **verify** size, sha256 and md5 when known (the hashes follow the download in
   a thread, reading each byte once, so finishing costs little); a mismatch raises
   :class:`~earthkeep.errors.IntegrityError` and discards the partial file;
5. **hand over** the verified file with ``store.put_file`` (with its sha256 when
   the store accepts one, sparing it a hashing pass) and delete the partial file
   and its sidecar. Nothing unverified is ever stored. The engine hashes only
   what it must verify, plus sha256 when the store accepts it.

Errors: :class:`~earthkeep.errors.TransferFailed` (retries exhausted or a
definitive refusal such as 403), :class:`~earthkeep.errors.NotFound` (404/410),
:class:`~earthkeep.errors.IntegrityError`, :class:`~earthkeep.errors.InvalidInput`
(bad URL or ranges), :class:`~earthkeep.errors.Conflict` (the same request is
already running). A failed download keeps its partial file for a resume only
when it holds bytes; an empty one (a 404, a refusal before the first byte) is
removed with its sidecar.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import structlog

from earthkeep.config import TransferSettings
from earthkeep.errors import IntegrityError, InvalidInput, NotFound, TransferFailed
from earthkeep.store.base import ObjectInfo, Store
from earthkeep.store.keys import safe_key
from earthkeep.transfer.download import Download, Progress
from earthkeep.transfer.http import (
    RETRYABLE_EXCEPTIONS,
    FatalHTTPError,
    RetryableError,
    RetryPolicy,
    check_status,
    make_client,
)
from earthkeep.transfer.partial import PartialFile
from earthkeep.transfer.plan import Fetch, plan_segments
from earthkeep.transfer.probe import RemoteInfo, remote_from_range_answer, remote_info
from earthkeep.transfer.ranges import Span, check_range, format_range, parse_content_range
from earthkeep.transfer.request import (
    TransferRequest,
    TransferResult,
    algorithms,
    check_announced_size,
    check_received,
    identity,
    partial_name,
    spans_for,
)
from earthkeep.transfer.urls import check_url_async

__all__ = ["TransferEngine", "TransferRequest", "TransferResult"]

log = structlog.get_logger(__name__)

MAX_REDIRECTS = 10
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
PROGRESS_RESETS_RETRIES = 1 << 20


@dataclass
class _Stats:
    attempts: int = 0
    retries: int = 0
    probed: bool = True
    answer_headers: Mapping[str, str] | None = None  # of the first usable answer, when there was no probe


class TransferEngine:
    """Async HTTP download engine writing verified objects into a :class:`Store`.

    Use as ``async with TransferEngine(store, settings) as engine:``; a client
    passed in is not closed by the engine. ``retry`` tunes the backoff (tests
    pass one with a recording ``sleep``).
    """

    def __init__(
        self,
        store: Store,
        settings: TransferSettings,
        *,
        client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._own_client = client is None
        self._client = client if client is not None else make_client(settings)
        self._retry = retry or RetryPolicy()
        self._hosts: dict[str, asyncio.Semaphore] = {}

    async def __aenter__(self) -> TransferEngine:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if the engine created it."""
        if self._own_client:
            await self._client.aclose()

    async def head(self, url: str, *, headers: Mapping[str, str] | None = None) -> RemoteInfo:
        """Size, range support, ETag and Last-Modified of ``url`` (with retries)."""
        return await self._probe(url, dict(headers or {}), _Stats(), untrusted=False)

    async def fetch_many(
        self,
        reqs: Sequence[TransferRequest],
        concurrency: int = 4,
        progress: Progress | None = None,
    ) -> list[TransferResult | BaseException]:
        """Fetch every request, at most ``concurrency`` files at once; errors are returned in place."""
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(req: TransferRequest) -> TransferResult:
            async with gate:
                return await self.fetch(req, progress)

        return await asyncio.gather(*(one(r) for r in reqs), return_exceptions=True)

    async def fetch(self, req: TransferRequest, progress: Progress | None = None) -> TransferResult:
        """Download ``req.url`` (or its ranges), verify it and store it under ``req.key``.

        ``progress`` is called with the number of bytes newly on disk each time
        (first with what an earlier run left, when resuming).
        """
        await self._validate(req)
        started = time.monotonic()
        stats = _Stats()
        remote = await self._remote(req, stats)
        spans = spans_for(req, remote)
        total = None if spans[0].length is None else sum(s.length or 0 for s in spans)
        check_announced_size(req, total)
        partial = await PartialFile.open(self._settings.work_dir, partial_name(req), identity(req, remote))
        dl = Download(partial, spans, algorithms=algorithms(req), progress=progress)
        size, digests = await self._download_or_clean_up(req, remote, dl, total, stats)
        await partial.close(save=False)  # complete: the sidecar is written only if the hand-over fails
        stored = await self._hand_over(req, partial, digests.get("sha256"))
        await partial.remove()
        result = TransferResult(
            key=req.key,
            size=size,
            sha256=digests.get("sha256") or stored.sha256,
            md5=digests.get("md5"),
            url=req.url,
            headers=remote.headers if stats.answer_headers is None else stats.answer_headers,
            attempts=stats.attempts,
            elapsed=time.monotonic() - started,
            fetched=dl.received,
            resumed=partial.resumed,
            retries=stats.retries,
            stored=stored,
        )
        _log_done(result)
        return result

    async def _download_or_clean_up(
        self, req: TransferRequest, remote: RemoteInfo, dl: Download, total: int | None, stats: _Stats
    ) -> tuple[int, dict[str, str]]:
        """Download and verify; discard the partial file on bad bytes or when empty, else keep it for a resume.

        A failure before the first byte (a 404, a refused request) leaves
        nothing to resume: its empty partial file and sidecar are removed.
        """
        try:
            return await self._download(req, remote, dl, total, stats)
        except IntegrityError:
            await dl.aclose()
            await dl.partial.remove()
            raise
        except BaseException as exc:
            await dl.aclose()
            if dl.partial.coverage.total() == 0:
                await dl.partial.remove()
            else:
                await dl.partial.aclose_on_error(exc)
            raise

    async def _remote(self, req: TransferRequest, stats: _Stats) -> RemoteInfo:
        """What the server says about ``req.url``; without a probe when the request allows and needs none.

        An unprobed remote has an unknown size and, for a ranges request, range
        support; the first answer fills in the rest (:func:`remote_from_range_answer`). A
        partial file left by an earlier run is always checked against a probe.
        """
        ranges = req.ranges or ()
        closed = all(end is not None for _, end in ranges)
        if req.probe or not closed or PartialFile.exists(self._settings.work_dir, partial_name(req)):
            return await self._probe(req.url, dict(req.headers), stats, untrusted=req.untrusted)
        stats.probed = False
        return RemoteInfo(url=req.url, size=None, ranges=bool(ranges))

    async def _hand_over(self, req: TransferRequest, partial: PartialFile, sha256: str | None) -> ObjectInfo:
        """Give the verified file to the store (with its sha256: no second hash pass; a local store renames it).

        When the store refuses it, the sidecar is saved so that a later run finds the complete file.
        """
        try:
            return await self._store.put_file(
                req.key, partial.path, content_type=req.content_type, sha256=sha256, consume=True
            )
        except BaseException:
            partial.save()
            raise

    async def _validate(self, req: TransferRequest) -> None:
        safe_key(req.key)
        for r in req.ranges or ():
            check_range(r)
        if not req.url.lower().startswith(("http://", "https://")):
            raise InvalidInput(f"URL {req.url!r}: only http:// and https:// URLs can be fetched")
        if req.untrusted:
            await check_url_async(req.url, self._settings.allow_private)

    async def _download(
        self, req: TransferRequest, remote: RemoteInfo, dl: Download, total: int | None, stats: _Stats
    ) -> tuple[int, dict[str, str]]:
        dl.report_resumed()
        try:
            total = await self._fetch_all(req, remote, dl, total, stats)
        except FatalHTTPError as exc:
            raise _fatal(req.url, exc) from exc
        except httpx.HTTPError as exc:
            raise TransferFailed(f"{req.url}: {_describe(exc)}") from exc
        dl.checkpoint()
        return total, await _verify(req, dl, total)

    async def _fetch_all(
        self, req: TransferRequest, remote: RemoteInfo, dl: Download, total: int | None, stats: _Stats
    ) -> int:
        if total is not None and remote.ranges:
            await dl.partial.set_size(total)
            await self._run_segments(req, dl, total, stats)
        else:
            await self._run_stream(req, remote, dl, stats)
            total = dl.partial.coverage.prefix()
            await dl.partial.set_size(total)
        return total

    async def _run_segments(self, req: TransferRequest, dl: Download, total: int, stats: _Stats) -> None:
        segments = self._settings.segments
        fetches = plan_segments(dl.spans, dl.partial.coverage, segments, merge_gap=req.merge_gap)
        if not fetches:
            return
        queue = list(reversed(fetches))

        async def worker() -> None:
            while queue:
                await self._run_fetch(req, dl, queue.pop(), stats)

        await _all_or_nothing([worker() for _ in range(min(segments, len(fetches)))])

    async def _run_fetch(self, req: TransferRequest, dl: Download, fetch: Fetch, stats: _Stats) -> None:
        failures = 0
        while (todo := dl.remaining(fetch)) is not None:
            before = dl.received
            try:
                await self._fetch_once(req, dl, todo, stats)
                dl.checkpoint()
            except RETRYABLE_EXCEPTIONS as exc:
                failures = 0 if dl.received - before >= PROGRESS_RESETS_RETRIES else failures + 1
                await self._after_failure(req.url, exc, max(failures, 1), stats)

    async def _fetch_once(self, req: TransferRequest, dl: Download, fetch: Fetch, stats: _Stats) -> None:
        headers = {**req.headers, "range": format_range([fetch.byte_range()])}
        async with self._open("GET", req.url, headers, stats, untrusted=req.untrusted) as response:
            if not stats.probed and stats.answer_headers is None:
                _learn_from(response, req, dl, stats)
            check_status(response, req.url)
            _expect_partial(response, req.url, fetch, dl)
            await dl.consume(response, fetch)

    async def _run_stream(self, req: TransferRequest, remote: RemoteInfo, dl: Download, stats: _Stats) -> None:
        failures = 0
        while True:
            resume_at = dl.partial.coverage.prefix() if remote.ranges else 0
            if resume_at == 0 and dl.partial.coverage.total():
                await dl.restart()
            before = dl.received
            try:
                await self._stream_once(req, dl, resume_at, stats)
                return
            except RETRYABLE_EXCEPTIONS as exc:
                failures = 0 if dl.received - before >= PROGRESS_RESETS_RETRIES else failures + 1
                await self._after_failure(req.url, exc, max(failures, 1), stats)

    async def _stream_once(self, req: TransferRequest, dl: Download, start: int, stats: _Stats) -> None:
        headers = dict(req.headers)
        if start:
            headers["range"] = format_range([(start, None)])
        fetch = Fetch(start, None, (Span(start, start, None),))
        async with self._open("GET", req.url, headers, stats, untrusted=req.untrusted) as response:
            check_status(response, req.url)
            if start:
                _expect_partial(response, req.url, fetch, dl)
            elif response.status_code != 200:
                raise RetryableError(f"{req.url}: answered {response.status_code} to a plain GET")
            if not stats.probed and stats.answer_headers is None:
                stats.answer_headers = dict(response.headers)
            await dl.consume(response, fetch)

    async def _after_failure(self, url: str, exc: BaseException, failures: int, stats: _Stats) -> None:
        """Wait before the next attempt, or raise :class:`TransferFailed` when the budget is spent."""
        if failures > self._settings.retries:
            raise TransferFailed(
                f"{url}: gave up after {failures} failed attempts in a row; last error: {_describe(exc)}"
            ) from exc
        retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
        delay = self._retry.delay(failures, retry_after)
        stats.retries += 1
        log.warning("transfer.retry", url=url, attempt=failures, delay_s=round(delay, 3), error=_describe(exc))
        await self._retry.sleep(delay)

    async def _probe(self, url: str, headers: dict[str, str], stats: _Stats, *, untrusted: bool) -> RemoteInfo:
        failures = 0
        while True:
            try:
                return await remote_info(self._open, url, headers, stats, untrusted=untrusted)
            except RETRYABLE_EXCEPTIONS as exc:
                failures += 1
                await self._after_failure(url, exc, failures, stats)
            except FatalHTTPError as exc:
                raise _fatal(url, exc) from exc
            except httpx.HTTPError as exc:
                raise TransferFailed(f"{url}: {_describe(exc)}") from exc

    @contextlib.asynccontextmanager
    async def _open(
        self, method: str, url: str, headers: Mapping[str, str], stats: _Stats, *, untrusted: bool
    ) -> AsyncIterator[httpx.Response]:
        """Send one request under the host's concurrency limit, following redirects one hop at a time."""
        async with self._host_limit(url):
            stats.attempts += 1
            response = await self._send(method, url, headers, untrusted)
            try:
                yield response
                if method == "HEAD":  # read the empty body: only then does the connection go back to the pool
                    await response.aread()
            finally:
                await response.aclose()

    async def _send(self, method: str, url: str, headers: Mapping[str, str], untrusted: bool) -> httpx.Response:
        headers = dict(headers)
        if not any(k.lower() == "accept-encoding" for k in headers):
            headers["accept-encoding"] = "identity"  # byte offsets must mean the file's bytes
        for _ in range(MAX_REDIRECTS + 1):
            request = self._client.build_request(method, url, headers=headers)
            response = await self._client.send(request, stream=True, follow_redirects=False)
            if not response.is_redirect or response.next_request is None:
                return response
            await response.aclose()
            target = response.next_request.url
            if (target.scheme, target.host, target.port) != (request.url.scheme, request.url.host, request.url.port):
                headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
            url = str(target)
            if untrusted:
                await check_url_async(url, self._settings.allow_private)
        raise FatalHTTPError(f"{url}: more than {MAX_REDIRECTS} redirects")

    def _host_limit(self, url: str) -> asyncio.Semaphore:
        u = httpx.URL(url)
        host = f"{u.scheme}://{u.host}:{u.port or ''}"
        if host not in self._hosts:
            self._hosts[host] = asyncio.Semaphore(self._settings.per_host)
        return self._hosts[host]


async def _all_or_nothing(coros: Sequence[Any]) -> None:
    """Run ``coros`` concurrently; on the first error cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _learn_from(response: httpx.Response, req: TransferRequest, dl: Download, stats: _Stats) -> None:
    """Take what a probe would have told from the first answer to an unprobed ranges request."""
    remote = remote_from_range_answer(req.url, response, req.ranges or ())
    if remote is None:
        return  # not a 206: check_status decides (retry or give up)
    dl.partial.identity.update(remote_size=remote.size, etag=remote.etag, last_modified=remote.last_modified)
    stats.answer_headers = remote.headers


def _expect_partial(response: httpx.Response, url: str, fetch: Fetch, dl: Download) -> None:
    """A range request must get a 206 whose Content-Range starts where asked."""
    if response.status_code != 206:
        raise RetryableError(
            f"{url}: answered {response.status_code} to Range {format_range([fetch.byte_range()])}; 206 was required"
        )
    try:
        cr = parse_content_range(response.headers.get("content-range", ""))
    except InvalidInput as exc:
        raise RetryableError(f"{url}: {exc}") from exc
    if cr.start != fetch.start:
        raise RetryableError(f"{url}: asked for bytes from {fetch.start}, got Content-Range {cr.start}-{cr.end}")
    expected = dl.partial.identity.get("remote_size")
    if cr.total is not None and expected is not None and cr.total != expected:
        raise IntegrityError(
            f"{url}: the server now reports {cr.total} bytes in Content-Range but announced {expected}; "
            "the remote changed or lies about its size"
        )


async def _verify(req: TransferRequest, dl: Download, total: int) -> dict[str, str]:
    """Check that the partial file is complete and matches the expected size and checksums."""
    if not dl.partial.coverage.covers(0, total) or await dl.partial.size() != total:
        raise IntegrityError(f"{req.url}: partial file is incomplete ({dl.partial.coverage.total()} of {total} bytes)")
    digests = await dl.digests(total)
    check_received(req, total, digests)
    return digests


def _fatal(url: str, exc: FatalHTTPError) -> Exception:
    if exc.status in (404, 410):
        return NotFound(f"{url}: the server has no such file ({exc.status})")
    return TransferFailed(str(exc))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, RetryableError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _log_done(result: TransferResult) -> None:
    rate = result.size / max(result.elapsed, 1e-9) / (1 << 20)
    log.info(
        "transfer.done",
        url=result.url,
        key=result.key,
        bytes=result.size,
        fetched=result.fetched,
        resumed=result.resumed,
        attempts=result.attempts,
        retries=result.retries,
        seconds=round(result.elapsed, 3),
        mib_s=round(rate, 1),
    )
