"""One retry helper: exponential backoff with jitter, for every loop that tries again.

:class:`Backoff` says how long to wait after failed attempt ``n``;
:func:`retry_async` and :func:`retry_sync` call a function until it succeeds,
its error is not worth repeating, or the attempts are spent (then the last
error propagates unchanged, so callers translate it as they would a first
failure). The transfer engine uses :class:`Backoff` directly, because a
download that made progress resets its count of failures.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
OnRetry = Callable[[int, float, BaseException], None]  # attempt (1-based), delay, error


@dataclass(frozen=True)
class Backoff:
    """``base_s * 2**(n-1)`` capped at ``max_s``, times a random factor in ``[1 - jitter, 1]``.

    A server's ``Retry-After`` wins over the backoff but is capped at
    ``retry_after_cap_s``. ``sleep`` is what waits (tests pass a recorder).
    """

    base_s: float = 0.25
    max_s: float = 20.0
    jitter: float = 0.5
    retry_after_cap_s: float = 120.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.retry_after_cap_s))
        backoff = min(self.max_s, self.base_s * 2 ** max(attempt - 1, 0))
        return backoff * (1.0 - self.jitter * self.rng.random())


async def retry_async(fn: Callable[[], Awaitable[T]], *, attempts: int, retryable: Callable[[Exception], bool],
                      backoff: Backoff, on_retry: OnRetry | None = None) -> T:
    """``await fn()`` up to ``attempts`` times while it raises a ``retryable`` error."""
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except Exception as exc:
            if attempt >= attempts or not retryable(exc):
                raise
            wait = backoff.delay(attempt)
            if on_retry:
                on_retry(attempt, wait, exc)
            await backoff.sleep(wait)
    raise ValueError(f"attempts must be at least 1, got {attempts}")


def retry_sync(fn: Callable[[], T], *, attempts: int, retryable: Callable[[Exception], bool], backoff: Backoff,
               on_retry: OnRetry | None = None, sleep: Callable[[float], None] = time.sleep) -> T:
    """:func:`retry_async` for blocking code (waits with ``sleep``)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt >= attempts or not retryable(exc):
                raise
            wait = backoff.delay(attempt)
            if on_retry:
                on_retry(attempt, wait, exc)
            sleep(wait)
    raise ValueError(f"attempts must be at least 1, got {attempts}")
