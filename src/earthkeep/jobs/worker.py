"""The worker loop: claim jobs, run N at once, keep their leases alive, record outcomes."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from typing import Any

import structlog

from earthkeep.catalog.tables import Job
from earthkeep.errors import (
    ConfigError,
    EarthkeepError,
    Forbidden,
    InvalidInput,
    NotFound,
    SourceUnavailable,
    Unauthorized,
)
from earthkeep.jobs.handlers import HandlerRegistry, JobContext, call_handler
from earthkeep.jobs.queue import JobQueue
from earthkeep.logs import bind_trace

log = structlog.get_logger(__name__)

PERMANENT = (InvalidInput, NotFound, Forbidden, Unauthorized, ConfigError)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Runs up to ``concurrency`` jobs at once from ``queue`` with the handlers of ``registry``."""

    def __init__(
        self, queue: JobQueue, registry: HandlerRegistry, services: Any = None, *,
        concurrency: int = 4, lease_s: float = 60.0, poll_s: float = 1.0, owner: str | None = None,
        reap_every_s: float = 5.0,
    ) -> None:
        self.queue, self.registry, self.services = queue, registry, services
        self.concurrency, self.lease_s, self.poll_s = concurrency, lease_s, poll_s
        self.owner = owner or worker_id()
        self.reap_every_s = reap_every_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._finished: list[tuple[int, dict[str, Any] | None, asyncio.Future[bool]]] = []
        self._done_ready = asyncio.Event()
        self.stats = {"claimed": 0, "completed": 0, "failed": 0, "retried": 0, "lost": 0}

    def wake(self) -> None:
        """Look for new jobs now (called after an in-process enqueue)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then let running jobs finish."""
        log.info("worker.started", owner=self.owner, concurrency=self.concurrency, kinds=self.registry.names())
        flusher = asyncio.create_task(self._flush_completions())
        last_reap = 0.0
        while not stop.is_set():
            if time.monotonic() - last_reap > self.reap_every_s:
                await self._safe(self.queue.reap_expired)
                last_reap = time.monotonic()
            claimed = await self._claim()
            if not claimed or len(self._tasks) >= self.concurrency:
                await self._idle(stop)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        log.info("worker.stopped", owner=self.owner, **self.stats)

    async def _claim(self) -> int:
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        jobs = await self._safe(self.queue.claim, self.owner, kinds=self.registry.names(),
                                limit=free, lease_s=self.lease_s) or []
        for job in jobs:
            task = asyncio.create_task(self._run_one(job))
            self._tasks.add(task)
            task.add_done_callback(self._done)
        self.stats["claimed"] += len(jobs)
        return len(jobs)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _safe(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except SourceUnavailable as exc:
            log.warning("worker.queue_unavailable", error=str(exc))
            return None

    async def _run_one(self, job: Job) -> None:
        bind_trace(job.trace_id)
        jlog = log.bind(job_id=job.id, kind=job.kind, attempt=job.attempts, trace_id=job.trace_id)
        ctx = JobContext(job=job, services=self.services, log=jlog)
        kind = self.registry.get(job.kind)
        work = asyncio.create_task(call_handler(kind, ctx))
        beat = asyncio.create_task(self._heartbeat(job, work, ctx))
        started = time.monotonic()
        try:
            result = await work
        except asyncio.CancelledError:
            if not ctx.cancelled.is_set():
                raise
            self.stats["lost"] += 1
            jlog.warning("job.stopped", reason="cancelled or lease lost")
            return
        except Exception as exc:
            await self._record_failure(job, exc, jlog)
            return
        finally:
            beat.cancel()
        ok = await self._complete(job.id, result)
        if ok:
            self.stats["completed"] += 1
            jlog.info("job.completed", seconds=round(time.monotonic() - started, 3))
        else:
            self.stats["lost"] += 1
            jlog.warning("job.result_discarded", reason="lease lost before completion")

    async def _complete(self, job_id: int, result: dict[str, Any] | None) -> bool:
        """Hand the result to the flusher, which completes finished jobs in batches."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._finished.append((job_id, result, fut))
        self._done_ready.set()
        return await fut

    async def _flush_completions(self) -> None:
        """One transaction for every job that finished since the last flush (one when idle)."""
        try:
            while True:
                await self._done_ready.wait()
                self._done_ready.clear()
                batch, self._finished = self._finished, []
                await self._flush(batch)
        finally:
            if self._finished:
                await self._flush(self._finished)

    async def _flush(self, batch: list[tuple[int, dict[str, Any] | None, asyncio.Future[bool]]]) -> None:
        try:
            held = await asyncio.to_thread(self.queue.complete_many, self.owner, [(i, r) for i, r, _ in batch])
        except Exception as exc:  # the catalog is unreachable: the leases expire and the jobs run again
            log.warning("worker.complete_failed", error=str(exc), jobs=len(batch))
            held = set()
        for job_id, _, fut in batch:
            if not fut.done():
                fut.set_result(job_id in held)

    async def _heartbeat(self, job: Job, work: asyncio.Task[Any], ctx: JobContext) -> None:
        interval = max(self.lease_s / 3, 0.05)
        while not work.done():
            await asyncio.sleep(interval)
            held = await self._safe(self.queue.heartbeat, job.id, self.owner, self.lease_s)
            if held is False:
                ctx.cancelled.set()
                work.cancel()
                return

    async def _record_failure(self, job: Job, exc: Exception, jlog: Any) -> None:
        retryable = not isinstance(exc, PERMANENT)
        reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, EarthkeepError) else repr(exc)
        status = await self._safe(self.queue.fail, job.id, self.owner, reason, retryable=retryable)
        key = "retried" if status == "pending" else "failed"
        self.stats[key] += 1
        jlog.warning("job.failed", error=reason, next_status=status, retryable=retryable,
                     exc_info=not isinstance(exc, EarthkeepError))
