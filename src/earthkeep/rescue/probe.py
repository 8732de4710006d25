"""Probing assets: sizes by ``HEAD``, landing pages scraped for download links, hostile URLs refused.

Every URL (and every redirect hop) passes :func:`earthkeep.transfer.urls.check_url_async`
first: ``file://``, loopback, private, link-local and other non-public targets are
refused (state ``refused``, never allocated) unless ``allow_private``. A ``HEAD``
answering 2xx gives the size (``Content-Length``; a value over
``max_asset_bytes`` is recorded as implausible and ignored) and media type; 404,
410, 5xx or no answer mark the asset ``failing`` (an at-risk signal). Landing
pages are read up to ``scrape_max_bytes``; links to data files on the same host
become child assets (kind ``file``), same-host pages are followed
``scrape_depth`` levels deep, at most ``scrape_max_pages`` pages per asset.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from earthkeep import __version__
from earthkeep.catalog.tables import utcnow
from earthkeep.errors import InvalidInput
from earthkeep.rescue.assets import declared_size, plan_link
from earthkeep.rescue.catalog import insert_assets
from earthkeep.rescue.scrape import extract_links
from earthkeep.rescue.settings import RescueSettings
from earthkeep.rescue.tables import RescueAsset
from earthkeep.transfer.urls import check_url_async

log = structlog.get_logger(__name__)
MAX_HOPS = 5
PROBED_KINDS = ("file", "api", "landing_page")


@dataclass
class Outcome:
    """What probing one asset found."""

    asset_id: int
    state: str = "ok"
    size: int | None = None
    size_note: str | None = None
    media_type: str | None = None
    error: str | None = None
    links: list[str] = field(default_factory=list)


class _Upstream(Exception):
    """The remote failed (status or network); the asset is marked failing."""


async def _request(client: httpx.AsyncClient, method: str, url: str, allow_private: bool) -> httpx.Response:
    """One request following redirects by hand, each hop checked; the body is left unread (streamed)."""
    for _ in range(MAX_HOPS + 1):
        await check_url_async(url, allow_private)
        try:
            response = await client.send(client.build_request(method, url), stream=True, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise _Upstream(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if not response.is_redirect or response.next_request is None:
            return response
        await response.aclose()
        url = str(response.next_request.url)
    raise _Upstream(f"{url}: more than {MAX_HOPS} redirects")


async def _head(client: httpx.AsyncClient, asset: Any, s: RescueSettings, allow_private: bool) -> Outcome:
    out = Outcome(asset.id)
    response = await _request(client, "HEAD", asset.url, allow_private)
    await response.aclose()
    if response.status_code in (405, 501, 403):  # HEAD refused: the asset is probably fine, size unknown
        return out
    if response.status_code >= 400:
        raise _Upstream(f"HEAD {asset.url}: HTTP {response.status_code}")
    if response.headers.get("content-encoding", "identity") == "identity":
        out.size, out.size_note = declared_size(response.headers.get("content-length"), s.max_asset_bytes)
    out.media_type = (response.headers.get("content-type") or "").split(";")[0].strip() or None
    return out


async def _read_page(client: httpx.AsyncClient, url: str, s: RescueSettings, allow_private: bool) -> str:
    response = await _request(client, "GET", url, allow_private)
    try:
        if response.status_code >= 400:
            raise _Upstream(f"GET {url}: HTTP {response.status_code}")
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= s.scrape_max_bytes:
                break
        return b"".join(chunks)[: s.scrape_max_bytes].decode(response.encoding or "utf-8", "replace")
    finally:
        await response.aclose()


async def _scrape(client: httpx.AsyncClient, asset: Any, s: RescueSettings, allow_private: bool) -> Outcome:
    out = Outcome(asset.id, media_type="text/html")
    todo, seen, files = [(asset.url, 0)], {asset.url}, []
    while todo and len(seen) <= s.scrape_max_pages:
        url, depth = todo.pop(0)
        try:
            html = await _read_page(client, url, s, allow_private)
        except (_Upstream, InvalidInput):
            if url == asset.url:
                raise
            continue  # a broken sub-page does not fail the landing page
        found, pages = extract_links(html, url)
        files += [f for f in found if f not in files]
        if depth < s.scrape_depth:
            for page in pages:
                if page not in seen and len(seen) < s.scrape_max_pages:
                    seen.add(page)
                    todo.append((page, depth + 1))
    out.links = files
    return out


async def probe_one(client: httpx.AsyncClient, asset: Any, s: RescueSettings, allow_private: bool) -> Outcome:
    """Probe one asset; never raises for a bad remote (the outcome says what went wrong)."""
    try:
        if asset.kind == "landing_page":
            return await _scrape(client, asset, s, allow_private)
        return await _head(client, asset, s, allow_private)
    except InvalidInput as exc:
        return Outcome(asset.id, state="refused", error=str(exc))
    except _Upstream as exc:
        return Outcome(asset.id, state="failing", error=str(exc))


def _pending(s: Session, limit: int) -> list[Any]:
    stmt = (select(RescueAsset.id, RescueAsset.url, RescueAsset.kind, RescueAsset.dataset_id,
                   RescueAsset.resource_id, RescueAsset.filename)
            .where(RescueAsset.probed_at.is_(None), RescueAsset.state == "new",
                   RescueAsset.kind.in_(PROBED_KINDS))
            .order_by(RescueAsset.priority.desc(), RescueAsset.id).limit(limit))
    return list(s.execute(stmt).all())


def _store(s: Session, assets: dict[int, Any], outcomes: list[Outcome]) -> int:
    now = utcnow()
    children = []
    for o in outcomes:
        values: dict[str, Any] = {"probed_at": now, "state": o.state, "updated_at": now}
        if o.state == "refused":
            values.update(pool=False, last_error=o.error)
        elif o.state == "failing":
            values.update(last_error=o.error, failures=RescueAsset.failures + 1)
        if o.size is not None:
            values.update(size=o.size, size_source="head")
        if o.size_note:
            values["size_note"] = o.size_note
        if o.media_type:
            values["media_type"] = o.media_type
        s.execute(update(RescueAsset).where(RescueAsset.id == o.asset_id).values(**values))
        a = assets[o.asset_id]
        children += [(a.dataset_id, a.resource_id, plan_link(url, a.filename, i), a.id)
                     for i, url in enumerate(o.links)]
    return insert_assets(s, children, now)


async def probe_assets(sessions: sessionmaker[Session], settings: RescueSettings, *, allow_private: bool,
                       limit: int | None = None, transport: httpx.AsyncBaseTransport | None = None) -> dict[str, int]:
    """Probe up to ``limit`` (``probe_batch``) unprobed assets; returns counts by outcome."""
    with sessions() as s:
        pending = _pending(s, limit or settings.probe_batch)
    gate = asyncio.Semaphore(settings.probe_concurrency)
    headers = {"user-agent": f"earthkeep/{__version__} (data rescue)"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), headers=headers, transport=transport) as client:

        async def one(a: Any) -> Outcome:
            async with gate:
                return await probe_one(client, a, settings, allow_private)

        outcomes = await asyncio.gather(*(one(a) for a in pending))
    with sessions.begin() as s:
        links = _store(s, {a.id: a for a in pending}, list(outcomes))
    counts = {"probed": len(outcomes), "links": links}
    for o in outcomes:
        counts[o.state] = counts.get(o.state, 0) + 1
    log.info("rescue.probe.done", **counts)
    return counts
