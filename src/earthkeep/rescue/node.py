"""A rescue node: register, take leases, fetch with the transfer engine, bag per dataset, report back.

:class:`RescueNode` talks to the server through a :class:`NodeClient`
(:class:`HttpNodeClient` for ``earthkeep rescue node --server URL --token ...``;
the server can rescue into its own store with an in-process client, see
:mod:`earthkeep.rescue.selfnode`). Payloads go through
:class:`earthkeep.transfer.TransferEngine` (``untrusted=True``: the node checks
every URL and redirect against loopback/private targets itself), then into the
dataset's BagIt bag (:class:`earthkeep.rescue.bags.BagWriter`). While leases
run, a heartbeat keeps them alive; a lease the server says is lost is not
reported. Failures are reported with ``upstream=True`` when the remote is at
fault (404, refused, retries exhausted, wrong bytes) so the server can rank the
asset as at risk.

A node that is cancelled (the CLI cancels it on SIGINT and SIGTERM) gives its
leases back through ``POST /release`` before the cancellation goes on: a
download that had not finished is released as ``failed`` (not upstream's fault,
so the asset is not marked at risk and other nodes can take it at once); a
payload already verified and written into its bag is reported ``done``. The
transfer engine only puts verified, complete files into the store, so an
interrupted download never reaches a bag (its partial file stays in the
engine's work directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import structlog

from earthkeep import __version__
from earthkeep.config import TransferSettings
from earthkeep.errors import (
    EarthkeepError,
    Forbidden,
    IntegrityError,
    InvalidInput,
    NotFound,
    SourceUnavailable,
    TransferFailed,
    Unauthorized,
)
from earthkeep.rescue.bags import BagWriter
from earthkeep.retry import Backoff, retry_async
from earthkeep.store.base import Store
from earthkeep.transfer.engine import TransferEngine, TransferRequest
from earthkeep.transfer.request import TransferResult

log = structlog.get_logger(__name__)
UPSTREAM_ERRORS = (NotFound, TransferFailed, IntegrityError, InvalidInput)
GIVE_BACK_S = 20.0
STOPPED = {"status": "failed", "reason": "the node was stopped before this download finished; released for "
           "other nodes", "upstream": False}
T = TypeVar("T")


class NodeClient(Protocol):
    """What a node needs from the rescue server."""

    async def register(self, name: str, capacity_bytes: int, free_bytes: int) -> dict[str, Any]: ...
    async def allocate(self, free_bytes: int, max_items: int) -> list[dict[str, Any]]: ...
    async def heartbeat(self, allocation_ids: list[int], free_bytes: int) -> dict[str, Any]: ...
    async def release(self, allocation_id: int, body: dict[str, Any]) -> dict[str, Any]: ...
    async def dataset(self, dataset_id: int) -> dict[str, Any]: ...


class HttpNodeClient:
    """The rescue API over HTTP with a ``node`` API key."""

    ERRORS = {401: Unauthorized, 403: Forbidden, 404: NotFound, 409: EarthkeepError, 422: InvalidInput}

    def __init__(self, server: str, token: str, *, timeout_s: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=server.rstrip("/"), timeout=timeout_s, transport=transport,
                                       headers={"authorization": f"Bearer {token}",
                                                "user-agent": f"earthkeep-node/{__version__}"})

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"rescue server {self._http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:300]
            cls = self.ERRORS.get(response.status_code, SourceUnavailable)
            raise cls(f"{method} {path}: HTTP {response.status_code}: {detail}")
        return response.json()

    async def register(self, name: str, capacity_bytes: int, free_bytes: int) -> dict[str, Any]:
        return dict(await self._call("POST", "/nodes/register", {
            "name": name, "capacity_bytes": capacity_bytes, "free_bytes": free_bytes,
            "meta": {"version": __version__}}))

    async def allocate(self, free_bytes: int, max_items: int) -> list[dict[str, Any]]:
        doc = await self._call("POST", "/allocate", {"free_bytes": free_bytes, "max_items": max_items})
        return list(doc["allocations"])

    async def heartbeat(self, allocation_ids: list[int], free_bytes: int) -> dict[str, Any]:
        return dict(await self._call("POST", "/allocations/heartbeat",
                                     {"allocation_ids": allocation_ids, "free_bytes": free_bytes}))

    async def release(self, allocation_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._call("POST", "/release", {"allocation_id": allocation_id, **body}))

    async def dataset(self, dataset_id: int) -> dict[str, Any]:
        return dict(await self._call("GET", f"/rescue/datasets/{dataset_id}"))


class Progress(Protocol):
    """Callbacks for a progress display (the CLI's rich bars)."""

    def started(self, lease: dict[str, Any]) -> None: ...
    def advanced(self, lease: dict[str, Any], nbytes: int) -> None: ...
    def finished(self, lease: dict[str, Any], ok: bool, note: str) -> None: ...


@dataclass
class NodeStats:
    """What a node did in one :meth:`RescueNode.run`."""

    rounds: int = 0
    leases: int = 0
    done: int = 0
    failed: int = 0
    lost: int = 0
    released: int = 0
    bytes: int = 0
    reports: list[dict[str, Any]] = field(default_factory=list)


class RescueNode:
    """Runs allocation rounds: ``max_rounds`` of them, until there is nothing left (``until_empty``), or forever."""

    def __init__(self, client: NodeClient, store: Store, transfer: TransferSettings, *, name: str,
                 capacity_bytes: int, directory: Path | None = None, concurrency: int = 4, batch: int = 20,
                 bag_prefix: str = "bags", progress: Progress | None = None,
                 engine_factory: Callable[[], TransferEngine] | None = None) -> None:
        self.client, self.store, self.transfer = client, store, transfer
        self.name, self.capacity, self.directory = name, capacity_bytes, directory
        self.concurrency, self.batch, self.progress = concurrency, batch, progress
        self.bags = BagWriter(store, bag_prefix)
        self._engine_factory = engine_factory or (lambda: TransferEngine(store, transfer))
        self._held = 0
        self._live: set[int] = set()
        self._bagged: dict[int, dict[str, Any]] = {}  # allocation id -> its 'done' report, until answered
        self._meta: dict[int, dict[str, Any]] = {}
        self.stats = NodeStats()

    def free_bytes(self) -> int:
        free = max(self.capacity - self._held, 0)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            free = min(free, shutil.disk_usage(self.directory).free)
        return free

    async def run(self, *, until_empty: bool = False, max_rounds: int | None = None, idle_s: float = 30.0,
                  heartbeat_s: float = 60.0) -> NodeStats:
        """Allocate and fetch in rounds (at most ``max_rounds``); with ``until_empty`` stop when the server has
        nothing for us, else wait ``idle_s`` and ask again.

        Cancelled, the node first gives back the leases it holds (:meth:`give_back`), then re-raises.
        """
        self._held = sum(o.size for o in await self.store.list(f"{self.bags.prefix}/"))
        answer = await self.client.register(self.name, self.capacity, self.free_bytes())
        lease_s = float(answer.get("lease_s") or 0)
        if lease_s > 0:  # beat at least three times per lease
            heartbeat_s = min(heartbeat_s, lease_s / 3)
        async with self._engine_factory() as engine:
            try:
                await self._rounds(engine, until_empty, max_rounds, idle_s, heartbeat_s)
            except asyncio.CancelledError:
                await self.give_back()
                raise
        return self.stats

    async def _rounds(self, engine: TransferEngine, until_empty: bool, max_rounds: int | None, idle_s: float,
                      heartbeat_s: float) -> None:
        while max_rounds is None or self.stats.rounds < max_rounds:
            leases = await self._allocate()
            self.stats.rounds += 1
            if not leases:
                if until_empty:
                    return
                await asyncio.sleep(idle_s)
                continue
            await self._round(engine, leases, heartbeat_s)

    async def _allocate(self) -> list[dict[str, Any]]:
        """One batch of leases; cancelled while the answer is on its way, still learn them (to give them back)."""
        call = asyncio.ensure_future(self.client.allocate(self.free_bytes(), self.batch))
        try:
            leases = await asyncio.shield(call)
        except asyncio.CancelledError:
            with contextlib.suppress(EarthkeepError, TimeoutError):
                late = await asyncio.wait_for(call, GIVE_BACK_S)
                self._live.update(lease["allocation_id"] for lease in late)
            raise
        self._live = {lease["allocation_id"] for lease in leases}
        return leases

    async def give_back(self, timeout_s: float = GIVE_BACK_S) -> int:
        """Release every lease still held, at once, one attempt each within ``timeout_s``; returns how many.

        A payload already in its bag is reported ``done``; any other lease ``failed`` with
        ``upstream=False``, so the server puts the asset back in the pool for other nodes
        without counting it against the asset.
        """
        held = sorted(self._live)
        if not held:
            return 0
        bodies = [self._bagged.get(aid, STOPPED) for aid in held]
        calls = asyncio.gather(*(self.client.release(aid, body) for aid, body in zip(held, bodies, strict=True)),
                               return_exceptions=True)
        try:
            answers = await asyncio.wait_for(calls, timeout_s)
        except TimeoutError:
            log.warning("rescue.node.give_back_timeout", leases=held, timeout_s=timeout_s)
            return 0
        released = 0
        for aid, body, answer in zip(held, bodies, answers, strict=True):
            if isinstance(answer, BaseException):
                log.warning("rescue.node.give_back_refused", allocation_id=aid, error=str(answer))
                continue
            self._live.discard(aid)
            released += 1
            if body["status"] == "done":
                self.stats.done += 1
                self.stats.bytes += int(body["size"])
        self.stats.released += released
        log.info("rescue.node.gave_back", leases=len(held), released=released)
        return released

    async def _round(self, engine: TransferEngine, leases: list[dict[str, Any]], heartbeat_s: float) -> None:
        self.stats.leases += len(leases)
        beat = asyncio.create_task(self._heartbeat(heartbeat_s))
        gate = asyncio.Semaphore(self.concurrency)

        async def one(lease: dict[str, Any]) -> None:
            async with gate:
                await self._rescue(engine, lease)

        try:
            await asyncio.gather(*(one(lease) for lease in leases))
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _heartbeat(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                answer = await self.client.heartbeat(sorted(self._live), self.free_bytes())
            except EarthkeepError as exc:
                log.warning("rescue.node.heartbeat_failed", error=str(exc))
                continue
            for lost in answer.get("lost", []):
                self._live.discard(lost)

    async def _rescue(self, engine: TransferEngine, lease: dict[str, Any]) -> None:
        if self.progress:
            self.progress.started(lease)
        key = self.bags.payload_key(lease["dataset"], lease["filename"])
        req = TransferRequest(url=lease["url"], key=key, untrusted=True, content_type=lease.get("media_type"))

        def on_bytes(n: int) -> None:
            if self.progress:
                self.progress.advanced(lease, n)

        try:
            meta = await self._dataset_meta(lease["dataset_id"])
            result = await engine.fetch(req, progress=on_bytes)
            # the payload is in data/ now: finish its bag entry even if cancelled meanwhile
            body = await _to_the_end(self._bag(lease, result, meta))
        except EarthkeepError as exc:
            await self._report(lease, {"status": "failed", "reason": f"{type(exc).__name__}: {exc}",
                                       "upstream": isinstance(exc, UPSTREAM_ERRORS)}, ok=False, note=str(exc))
            return
        await self._report(lease, body, ok=True, note=result.sha256 or "")
        self.stats.bytes += result.size

    async def _bag(self, lease: dict[str, Any], result: TransferResult, meta: dict[str, Any]) -> dict[str, Any]:
        """Record a stored payload in its bag; returns (and keeps, for :meth:`give_back`) its 'done' report."""
        root = await self.bags.add(lease["dataset"], lease["filename"], result.sha256 or "", metadata=meta,
                                   headers=dict(result.headers), info={"External-Identifier": str(meta.get("id", ""))})
        self._held += result.size
        body = {"status": "done", "size": result.size, "sha256": result.sha256,
                "location": f"{root}/data/{lease['filename']}"}
        self._bagged[lease["allocation_id"]] = body
        return body

    async def _dataset_meta(self, dataset_id: int) -> dict[str, Any]:
        if dataset_id not in self._meta:
            doc = await self.client.dataset(dataset_id)
            self._meta[dataset_id] = dict(doc.get("metadata") or {})
        return self._meta[dataset_id]

    async def _release(self, aid: int, body: dict[str, Any], attempts: int = 3) -> dict[str, Any]:
        """Report to the server, retrying while it is unreachable (the lease heartbeat keeps it alive)."""
        return await retry_async(lambda: self.client.release(aid, body), attempts=attempts,
                                 retryable=lambda exc: isinstance(exc, SourceUnavailable),
                                 backoff=Backoff(base_s=2.0, max_s=30.0, jitter=0.0))

    async def _report(self, lease: dict[str, Any], body: dict[str, Any], *, ok: bool, note: str) -> None:
        aid = lease["allocation_id"]
        try:
            answer = await self._release(aid, body)
            self.stats.reports.append(answer)
        except EarthkeepError as exc:
            log.warning("rescue.node.release_refused", allocation_id=aid, error=str(exc))
            self.stats.lost += 1
            ok = False
        self._live.discard(aid)
        self._bagged.pop(aid, None)
        if ok:
            self.stats.done += 1
        elif body["status"] == "failed":
            self.stats.failed += 1
        if self.progress:
            self.progress.finished(lease, ok, note)


async def _to_the_end(aw: Awaitable[T]) -> T:
    """Await ``aw`` to its end even when cancelled meanwhile, then re-raise the cancellation (whatever ``aw``
    ended with); a second cancellation stops the wait."""
    task = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
