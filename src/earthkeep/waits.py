"""Waiting for an event with a timeout, without losing a cancellation.

On Python 3.11, ``asyncio.wait_for(event.wait(), t)`` can swallow a task's
cancellation when the event is set at the same moment (the result wins, the
``CancelledError`` is dropped). A polling loop written with it then never stops,
and whoever awaits the cancelled task hangs. :func:`wait_event` waits with
``asyncio.wait``, which always lets the cancellation through.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; True when it was set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()


class Stopped(Exception):
    """:func:`unless_stopped` gave up on its awaitable because the stop event was set."""


async def unless_stopped(aw: Coroutine[Any, Any, T], stop: asyncio.Event) -> T:
    """Await ``aw`` unless ``stop`` is set first: then cancel it and raise :class:`Stopped`.

    For steps that can wait for ever on a server that is down (a NATS connect that
    retries without end), so that shutting down does not wait for them.
    """
    task = asyncio.ensure_future(aw)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise Stopped("stopped while waiting")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on uvloop when it is installed (the service and the consumers), else asyncio.

    uvloop's event loop costs a fraction of asyncio's per wake-up and per
    socket read, which is most of a NATS consumer's or an HTTP collector's time
    between records.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
