"""The one retry helper: attempts, what is retried, the waits, and the error that comes out."""

from __future__ import annotations

import asyncio
import random

import pytest

from earthkeep.errors import InvalidInput, SourceUnavailable
from earthkeep.retry import Backoff, retry_async, retry_sync


def flaky(failures: list[Exception]):
    calls = []

    def fn():
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return len(calls)

    return fn, calls


def test_backoff_doubles_to_its_cap_and_jitter_only_shortens():
    b = Backoff(base_s=1.0, max_s=5.0, jitter=0.5, rng=random.Random(3))
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)):
        assert full * 0.5 <= b.delay(attempt) <= full
    assert Backoff(jitter=0.0, base_s=2.0).delay(2) == 4.0
    assert Backoff(retry_after_cap_s=10).delay(1, retry_after=300) == 10  # Retry-After wins, capped


def test_sync_retries_transient_errors_then_succeeds_with_the_waits_recorded():
    fn, calls = flaky([SourceUnavailable("a"), SourceUnavailable("b")])
    waits, seen = [], []
    out = retry_sync(fn, attempts=3, retryable=lambda e: isinstance(e, SourceUnavailable),
                     backoff=Backoff(base_s=0.1, jitter=0.0), sleep=waits.append,
                     on_retry=lambda n, d, e: seen.append((n, d, str(e))))
    assert out == 3 and len(calls) == 3
    assert waits == [0.1, 0.2] and seen == [(1, 0.1, "a"), (2, 0.2, "b")]


def test_sync_gives_up_with_the_last_error_and_never_retries_a_permanent_one():
    fn, calls = flaky([SourceUnavailable("1"), SourceUnavailable("2"), SourceUnavailable("3")])
    with pytest.raises(SourceUnavailable, match="2"):
        retry_sync(fn, attempts=2, retryable=lambda e: True, backoff=Backoff(jitter=0.0), sleep=lambda s: None)
    assert len(calls) == 2
    fn, calls = flaky([InvalidInput("bad")])
    with pytest.raises(InvalidInput):
        retry_sync(fn, attempts=5, retryable=lambda e: isinstance(e, SourceUnavailable), backoff=Backoff(),
                   sleep=lambda s: None)
    assert len(calls) == 1


def test_async_retries_with_the_backoff_sleep():
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    fn, _ = flaky([SourceUnavailable("x")])

    async def call():
        return fn()

    out = asyncio.run(retry_async(call, attempts=3, retryable=lambda e: True,
                                  backoff=Backoff(base_s=2.0, jitter=0.0, sleep=sleep)))
    assert out == 2 and waits == [2.0]
