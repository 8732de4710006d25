"""The running generator: simulated stations feeding the collector at a configured rate.

``POST /generator/start`` starts one in the API process (it submits through the
same collector as HTTP clients, so validation, dead letters and the broker are
exercised); ``earthkeep stations simulate`` does the same over HTTP from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import BaseModel, Field

from earthkeep.ingest.simulator import Simulator, make_stations

log = structlog.get_logger(__name__)


class GeneratorParams(BaseModel):
    """How the generator behaves (the body of ``POST /generator/start``)."""

    stations: int = Field(10, ge=1, le=10_000)
    rate: float = Field(100.0, gt=0, le=1_000_000, description="records per second")
    batch_size: int = Field(100, ge=1, le=100_000)
    duplicate_rate: float = Field(0.02, ge=0, le=1)
    late_rate: float = Field(0.01, ge=0, le=1)
    invalid_rate: float = Field(0.01, ge=0, le=1)
    duration_s: float | None = Field(None, gt=0, le=30 * 86400, description="stop by itself after this long")
    backfill_s: float = Field(0.0, ge=0, le=3650 * 86400, description="start the station clocks this far in the past")
    seed: int = Field(1, ge=0, le=2**32 - 1)


@dataclass
class GeneratorStatus:
    running: bool = False
    params: dict[str, Any] | None = None
    started_at: str | None = None
    batches: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed_batches: int = 0
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Submit = Callable[[list[dict[str, Any]]], Awaitable[tuple[int, int]]]


class Generator:
    """Start/stop/status of one simulation task feeding ``submit`` (returns accepted, rejected)."""

    def __init__(self, submit: Submit, register: Callable[[list[Any]], Awaitable[None]]) -> None:
        self._submit = submit
        self._register = register
        self._task: asyncio.Task[None] | None = None
        self.status = GeneratorStatus()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, params: GeneratorParams) -> GeneratorStatus:
        await self.stop()
        stations = make_stations(params.stations, seed=params.seed)
        await self._register(stations)
        step = params.stations / params.rate  # each station's clock keeps pace with the wall clock
        sim = Simulator(stations, datetime.now(UTC) - timedelta(seconds=params.backfill_s), step_s=step,
                        seed=params.seed, duplicate_rate=params.duplicate_rate, late_rate=params.late_rate,
                        invalid_rate=params.invalid_rate, keep_keys=False)
        self.status = GeneratorStatus(True, params.model_dump(), datetime.now(UTC).isoformat())
        self._task = asyncio.create_task(self._run(sim, params))
        return self.status

    async def stop(self) -> GeneratorStatus:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self.status.running = False
        return self.status

    async def _run(self, sim: Simulator, p: GeneratorParams) -> None:
        started = time.monotonic()
        try:
            while p.duration_s is None or time.monotonic() - started < p.duration_s:
                due = started + (self.status.sent + p.batch_size) / p.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await self._send(sim.batch(p.batch_size))
            await self._send(sim.flush())
        finally:
            self.status.running = False
            self.status.extra = {"distinct_valid_sent": sim.valid_sent}
            log.info("ingest.generator_stopped", sent=self.status.sent, accepted=self.status.accepted)

    async def _send(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self.status.batches += 1
        self.status.sent += len(records)
        try:
            accepted, rejected = await self._submit(records)
            self.status.accepted += accepted
            self.status.rejected += rejected
        except Exception as exc:
            self.status.failed_batches += 1
            self.status.last_error = str(exc)
            log.warning("ingest.generator_batch_failed", error=str(exc))
