"""Waiting helpers: a stop event ends a wait that a dead server would make endless."""

from __future__ import annotations

import asyncio

import pytest

from earthkeep.waits import Stopped, unless_stopped, wait_event


def test_unless_stopped_returns_the_result_when_it_comes_first():
    async def main():
        stop = asyncio.Event()

        async def quick():
            return 42

        return await unless_stopped(quick(), stop)

    assert asyncio.run(main()) == 42


def test_unless_stopped_cancels_an_endless_wait_when_stop_is_set():
    cancelled = []

    async def main():
        stop = asyncio.Event()

        async def forever():  # a NATS connect retrying a server that is down
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        asyncio.get_running_loop().call_later(0.05, stop.set)
        await unless_stopped(forever(), stop)

    with pytest.raises(Stopped):
        asyncio.run(main())
    assert cancelled == [True]


def test_wait_event_reports_whether_the_event_was_set():
    async def main():
        e = asyncio.Event()
        first = await wait_event(e, 0.01)
        e.set()
        return first, await wait_event(e, 0.01)

    assert asyncio.run(main()) == (False, True)
