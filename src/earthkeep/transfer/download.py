"""One file being downloaded: routing received bytes to their offsets, progress, hashes.

The engine decides *what* to request; a :class:`Download` takes each response
body, writes its bytes where the layout says (several places when requested
ranges overlap), records them in the partial file's coverage, reports progress,
and keeps the checksums running a little behind the contiguous written prefix
so that at the end almost nothing is left to hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
import time
from collections.abc import Callable, Iterable, Sequence

import httpx

from earthkeep.transfer.http import RetryableError
from earthkeep.transfer.partial import Hasher, PartialFile
from earthkeep.transfer.plan import Fetch, plan_fetches
from earthkeep.transfer.ranges import Span

WRITE_SIZE = 1 << 20
WRITES_IN_FLIGHT = 4
HASH_STEP = 8 << 20
SAVE_BYTES = 32 << 20
SAVE_INTERVAL_S = 1.0

Progress = Callable[[int], None]


class Download:
    """State of one file: the partial file, where bytes go, counters and running hashes."""

    def __init__(
        self,
        partial: PartialFile,
        spans: Sequence[Span],
        *,
        algorithms: Iterable[str] = (),
        progress: Progress | None = None,
    ) -> None:
        self.partial = partial
        self.spans = list(spans)
        self.received = 0
        self._algorithms = tuple(algorithms)
        self._hashers: dict[str, Hasher] = {a: _new_hasher(a) for a in self._algorithms}
        self._hashed = 0
        self._hash_task: asyncio.Task[None] | None = None
        self._hash_error: BaseException | None = None
        self._progress = progress
        self._unsaved = 0
        self._saved_at = time.monotonic()

    @property
    def hashing(self) -> bool:
        """True when checksums are computed while downloading."""
        return bool(self._hashers)

    def report_resumed(self) -> None:
        """Tell the progress callback about the bytes an earlier run left on disk."""
        if self._progress is not None and self.partial.resumed:
            self._progress(self.partial.resumed)

    def remaining(self, fetch: Fetch) -> Fetch | None:
        """The part of ``fetch`` not yet on disk, as one request, or ``None`` when complete."""
        todo = plan_fetches(fetch.spans, self.partial.coverage, piece=sys.maxsize, merge_gap=sys.maxsize)
        return todo[0] if todo else None

    async def consume(self, response: httpx.Response, fetch: Fetch) -> int:
        """Write the body of ``response`` (remote bytes from ``fetch.start`` on); return its length.

        Up to :data:`WRITES_IN_FLIGHT` writes run in threads while the next bytes
        are read. A body announced with exactly the asked length is read to its
        end, so that the connection goes back to the pool; otherwise reading stops
        at ``fetch.end`` (bytes past it are ignored) and the connection is
        dropped. A body shorter than asked
        raises :class:`RetryableError` after what did arrive is written (a retry
        resumes there).
        """
        writes = _Writes(self, fetch.spans)
        pos = fetch.start
        limit = None if fetch.end is None else fetch.end + 1
        reusable = limit is not None and response.headers.get("content-length", "").strip() == str(limit - pos)
        pending: list[bytes] = []
        size = 0
        try:
            async with contextlib.aclosing(response.aiter_raw()) as body:  # type: ignore[type-var]
                async for chunk in body:
                    overrun = limit is not None and pos + size + len(chunk) > limit
                    if overrun:
                        chunk = chunk[: max(0, limit - pos - size)]  # type: ignore[operator]
                    self.received += len(chunk)
                    pending.append(chunk)
                    size += len(chunk)
                    if size >= WRITE_SIZE:
                        await writes.start(pos, pending)
                        pos, pending, size = pos + size, [], 0
                    if limit is not None and pos + size >= limit and (overrun or not reusable):
                        break  # all asked-for bytes are here; the rest of the body is not worth waiting for
        finally:
            if size:  # also after an error: keep what arrived for the retry
                await writes.start(pos, pending)
                pos += size
            await writes.finish()
        if limit is not None and pos < limit:
            raise RetryableError(f"body ended after {pos - fetch.start} of {limit - fetch.start} bytes")
        return pos - fetch.start

    async def _write(self, pos: int, chunks: list[bytes], spans: Sequence[Span]) -> None:
        """Write received bytes (remote offset ``pos``) wherever the spans want them."""
        stop = pos + sum(len(c) for c in chunks)
        if len(spans) == 1 and spans[0].src <= pos and (spans[0].src_stop or stop) >= stop:
            await self.partial.write(spans[0].dst + pos - spans[0].src, chunks)  # no copy: pwritev
            self._written(stop - pos)
            return
        view = memoryview(b"".join(chunks))
        for span in spans:
            a = max(pos, span.src)
            b = stop if span.src_stop is None else min(stop, span.src_stop)
            if a < b:
                await self.partial.write(span.dst + (a - span.src), [view[a - pos : b - pos]])
                self._written(b - a)

    def _written(self, n: int) -> None:
        if self._progress is not None:
            self._progress(n)
        self._unsaved += n
        self.checkpoint()
        self._kick_hash()

    def checkpoint(self) -> None:
        """Save the sidecar when 32 MiB or a second's worth of progress is not yet recorded in it.

        The sidecar is what a restarted process resumes from; saving it costs a
        file creation and a rename, so not after every write.
        """
        now = time.monotonic()
        if self._unsaved >= SAVE_BYTES or (self._unsaved and now - self._saved_at >= SAVE_INTERVAL_S):
            self.partial.save()
            self._unsaved = 0
            self._saved_at = now

    async def restart(self) -> None:
        """Start again from byte 0 (a server that cannot resume failed mid-body)."""
        await self._settle_hash()
        self._hashers = {a: _new_hasher(a) for a in self._algorithms}
        self._hashed = 0
        await self.partial.restart()

    def _kick_hash(self) -> None:
        if not self._hashers or (self._hash_task is not None and not self._hash_task.done()):
            return
        target = self.partial.coverage.prefix()
        if target - self._hashed >= HASH_STEP and self._hash_error is None:
            self._hash_task = asyncio.create_task(self._hash_to(target))

    async def _hash_to(self, target: int) -> None:
        try:
            await self.partial.hash_range(self._hashed, target, list(self._hashers.values()))
            self._hashed = target
        except Exception as exc:
            self._hash_error = exc

    async def _settle_hash(self) -> None:
        if self._hash_task is not None:
            await self._hash_task
            self._hash_task = None

    async def digests(self, total: int) -> dict[str, str]:
        """Finish hashing bytes ``[0, total)`` and return ``{algorithm: hex digest}``."""
        await self._settle_hash()
        if self._hashers and self._hashed < total:
            await self._hash_to(total)
        if self._hash_error is not None:
            raise self._hash_error
        return {name: h.hexdigest() for name, h in self._hashers.items()}

    async def aclose(self) -> None:
        """Stop background hashing (the partial file waits for its threads when closed)."""
        if self._hash_task is not None and not self._hash_task.done():
            self._hash_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._hash_task
        self._hash_task = None


class _Writes:
    """Writes of one response body running in threads, at most :data:`WRITES_IN_FLIGHT` at once."""

    def __init__(self, download: Download, spans: Sequence[Span]) -> None:
        self._download = download
        self._spans = spans
        self._running: set[asyncio.Task[None]] = set()

    async def start(self, pos: int, chunks: list[bytes]) -> None:
        """Start writing ``chunks`` (remote offset ``pos``); wait while too many writes are running."""
        self._running.add(asyncio.create_task(self._download._write(pos, chunks, self._spans)))
        while len(self._running) >= WRITES_IN_FLIGHT:
            done, self._running = await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()

    async def finish(self) -> None:
        """Wait for every write; raise the first error."""
        running, self._running = self._running, set()
        results = await asyncio.gather(*running, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


def _new_hasher(name: str) -> Hasher:
    if name == "md5":
        return hashlib.md5(usedforsecurity=False)
    return hashlib.new(name)
