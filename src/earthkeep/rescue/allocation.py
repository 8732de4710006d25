"""Allocation of assets to rescue nodes: registration, leases, heartbeats, release, expiry.

Rules: a node gets the highest-priority assets in the pool that fit its free
space (reported free bytes minus what its active leases reserve; an asset of
unknown size reserves ``unknown_size_bytes``); an asset never has more than
``replication`` copies in flight plus held (one more while its copies disagree,
as a tie-breaker); a node never gets the same asset twice (unique
``(asset, node)``: a lease that failed or expired is not offered to that node
again, only to others).

Concurrency: ``rescue_assets.replicas`` (active leases + held copies not in
disagreement) only changes while the asset's row is locked. ``allocate`` locks
the node row (one allocation per node at a time), then picks assets with
``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (concurrent nodes skip each
other's candidates instead of waiting) and re-checks ``replicas`` on the locked
rows; on SQLite the transaction is ``BEGIN IMMEDIATE`` (one writer at a time).
``release`` and ``reap`` lock the lease, then the asset, and recount
``replicas`` exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, select, update
from sqlalchemy.orm import Session

from earthkeep.catalog.tables import ApiKey, utcnow
from earthkeep.errors import Conflict, InvalidInput, NotFound
from earthkeep.rescue.settings import RescueSettings
from earthkeep.rescue.tables import Allocation, Copy, Dataset, Node, RescueAsset
from earthkeep.rescue.verify import cross_check, recount

MAX_BYTES = (1 << 63) - 1


@dataclass(frozen=True)
class Lease:
    """What a node is told to fetch."""

    allocation_id: int
    asset_id: int
    dataset_id: int
    dataset: str
    url: str
    filename: str
    kind: str
    size: int | None
    sha256: str | None
    media_type: str | None
    expires_at: datetime

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["expires_at"] = self.expires_at.isoformat()
        return d


def _bytes(value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BYTES:
        raise InvalidInput(f"{what} must be a whole number of bytes between 0 and {MAX_BYTES}, got {value!r}")
    return value


def register_node(s: Session, key: ApiKey, *, name: str, capacity_bytes: int, free_bytes: int | None = None,
                  meta: dict[str, Any] | None = None) -> Node:
    """Create or update the node of ``key`` (one node per API key)."""
    capacity = _bytes(capacity_bytes, "capacity_bytes") or 0
    free = _bytes(free_bytes, "free_bytes")
    if not name or len(name) > 200:
        raise InvalidInput("node name must be 1 to 200 characters")
    node = s.scalars(select(Node).where(Node.api_key_id == key.id).with_for_update()).one_or_none()
    now = utcnow()
    if node is None:
        node = Node(name=name, api_key_id=key.id, registered_at=now, meta=meta or {})
        s.add(node)
    node.name, node.capacity_bytes, node.last_seen_at = name, capacity, now
    node.free_bytes = capacity if free is None else min(free, capacity) if capacity else free
    if meta is not None:
        node.meta = meta
    s.flush()
    return node


def node_of(s: Session, key: ApiKey, *, lock: bool = False) -> Node:
    """The node registered with ``key``, or :class:`NotFound`."""
    stmt = select(Node).where(Node.api_key_id == key.id)
    node = s.scalars(stmt.with_for_update() if lock else stmt).one_or_none()
    if node is None:
        raise NotFound(f"API key {key.name!r} has no registered node; POST /nodes/register first")
    return node


def _candidates(s: Session, node: Node, settings: RescueSettings, budget: int, limit: int) -> list[RescueAsset]:
    target = settings.replication + case((RescueAsset.conflict.is_(True), 1), else_=0)
    reserve = func.coalesce(RescueAsset.size, settings.unknown_size_bytes)
    held = exists().where(and_(Allocation.asset_id == RescueAsset.id, Allocation.node_id == node.id))
    has_copy = exists().where(and_(Copy.asset_id == RescueAsset.id, Copy.node_id == node.id))
    stmt = (select(RescueAsset)
            .where(RescueAsset.pool.is_(True), RescueAsset.replicas < target, reserve <= budget, ~held, ~has_copy)
            .order_by(RescueAsset.priority.desc(), RescueAsset.id).limit(limit)
            .with_for_update(skip_locked=True, of=RescueAsset))
    return list(s.scalars(stmt))


def allocate(s: Session, settings: RescueSettings, key: ApiKey, *, free_bytes: int | None = None,
             max_items: int | None = None) -> list[Lease]:
    """Lease the node the best assets that fit (its active leases are extended at the same time)."""
    limit = min(max_items or settings.max_allocate, settings.max_allocate)
    if limit < 1:
        raise InvalidInput("max_items must be at least 1")
    node = node_of(s, key, lock=True)
    now = utcnow()
    expires = now + timedelta(seconds=settings.lease_s)
    if free_bytes is not None:
        node.free_bytes = _bytes(free_bytes, "free_bytes") or 0
    node.last_seen_at = now
    s.execute(update(Allocation).where(Allocation.node_id == node.id, Allocation.status == "active")
              .values(heartbeat_at=now, expires_at=expires))
    reserved = s.scalar(select(func.coalesce(func.sum(Allocation.reserved_bytes), 0)).where(
        Allocation.node_id == node.id, Allocation.status == "active")) or 0
    budget = node.free_bytes - int(reserved)
    taken: list[tuple[RescueAsset, int]] = []
    for asset in _candidates(s, node, settings, budget, limit * 4) if budget > 0 else []:
        need = asset.size if asset.size is not None else settings.unknown_size_bytes
        if need <= budget and len(taken) < limit:
            taken.append((asset, need))
            budget -= need
    return _lease(s, node, taken, now, expires)


def _lease(s: Session, node: Node, taken: list[tuple[RescueAsset, int]], now: datetime,
           expires: datetime) -> list[Lease]:
    if not taken:
        return []
    rows = [Allocation(asset_id=a.id, node_id=node.id, status="active", reserved_bytes=need, created_at=now,
                       heartbeat_at=now, expires_at=expires) for a, need in taken]
    s.add_all(rows)
    for asset, _ in taken:
        asset.replicas += 1
    s.flush()
    names = {i: n for i, n in s.execute(select(Dataset.id, Dataset.name).where(
        Dataset.id.in_({a.dataset_id for a, _ in taken})))}
    return [Lease(r.id, a.id, a.dataset_id, names.get(a.dataset_id, str(a.dataset_id)), a.url, a.filename, a.kind,
                  a.size, a.sha256_declared, a.media_type, expires) for r, (a, _) in zip(rows, taken, strict=True)]


def heartbeat(s: Session, settings: RescueSettings, key: ApiKey, allocation_ids: list[int] | None = None,
              *, free_bytes: int | None = None) -> dict[str, list[int]]:
    """Extend the node's active leases (all, or the ones given); report the ones it no longer holds."""
    node = node_of(s, key)
    now = utcnow()
    node.last_seen_at = now
    if free_bytes is not None:
        node.free_bytes = _bytes(free_bytes, "free_bytes") or 0
    stmt = select(Allocation.id, Allocation.status).where(Allocation.node_id == node.id)
    stmt = stmt.where(Allocation.id.in_(allocation_ids)) if allocation_ids is not None else \
        stmt.where(Allocation.status == "active")
    rows = s.execute(stmt).all()
    live = [r.id for r in rows if r.status == "active"]
    if live:
        s.execute(update(Allocation).where(Allocation.id.in_(live), Allocation.status == "active").values(
            heartbeat_at=now, expires_at=now + timedelta(seconds=settings.lease_s)))
    known = {r.id for r in rows}
    lost = [r.id for r in rows if r.status != "active"] + [i for i in allocation_ids or [] if i not in known]
    return {"extended": live, "lost": lost}


def _own_allocation(s: Session, node: Node, allocation_id: int) -> Allocation:
    alloc = s.scalars(select(Allocation).where(Allocation.id == allocation_id).with_for_update()).one_or_none()
    if alloc is None or alloc.node_id != node.id:
        raise NotFound(f"allocation {allocation_id} is not one of node {node.name!r}'s")
    return alloc


def release(s: Session, settings: RescueSettings, key: ApiKey, allocation_id: int, *, status: str,
            size: int | None = None, sha256: str | None = None, reason: str | None = None,
            upstream: bool = False, location: str | None = None) -> dict[str, Any]:
    """Close a lease: ``done`` with the copy's size and sha256, or ``failed`` with a reason."""
    if status not in ("done", "failed"):
        raise InvalidInput("status must be 'done' or 'failed'")
    node = node_of(s, key)
    alloc = _own_allocation(s, node, allocation_id)
    asset = s.scalars(select(RescueAsset).where(RescueAsset.id == alloc.asset_id).with_for_update()).one()
    if status == "done":
        return _done(s, settings, node, alloc, asset, size, sha256, location)
    return _failed(s, alloc, asset, reason, upstream)


def _done(s: Session, settings: RescueSettings, node: Node, alloc: Allocation, asset: RescueAsset,
          size: int | None, sha256: str | None, location: str | None) -> dict[str, Any]:
    size = _bytes(size, "size")
    if size is None or not isinstance(sha256, str) or len(sha256) != 64 or \
            any(c not in "0123456789abcdef" for c in sha256.lower()):
        raise InvalidInput("a 'done' release needs size (bytes) and sha256 (64 hex digits)")
    copy = s.scalars(select(Copy).where(Copy.node_id == node.id, Copy.asset_id == asset.id)).one_or_none()
    if alloc.status == "done" and copy is not None and copy.sha256 == sha256.lower() and copy.size == size:
        return _answer(alloc, copy, asset)  # a retried release: nothing changes
    if alloc.status == "expired" and asset.replicas >= settings.replication + (1 if asset.conflict else 0):
        raise Conflict(f"allocation {alloc.id} expired and asset {asset.id} was given to other nodes; "
                       "the copy was not recorded (heartbeat more often than every "
                       f"{settings.lease_s:.0f} s)")
    if alloc.status not in ("active", "expired"):
        raise Conflict(f"allocation {alloc.id} is already {alloc.status}")
    now = utcnow()
    alloc.status, alloc.finished_at = "done", now
    if copy is None:
        copy = Copy(node_id=node.id, asset_id=asset.id, size=size, sha256=sha256.lower())
        s.add(copy)
    copy.allocation_id, copy.size, copy.sha256, copy.location, copy.reported_at = alloc.id, size, sha256.lower(), \
        location, now
    if asset.state in ("new", "failing"):
        asset.state = "ok"
    s.flush()
    cross_check(s, asset)
    recount(s, asset)
    return _answer(alloc, copy, asset)


def _failed(s: Session, alloc: Allocation, asset: RescueAsset, reason: str | None, upstream: bool) -> dict[str, Any]:
    if alloc.status == "failed":
        return _answer(alloc, None, asset)
    if alloc.status == "done":
        raise Conflict(f"allocation {alloc.id} is already done")
    alloc.status, alloc.finished_at, alloc.reason = "failed", utcnow(), (reason or "no reason given")[:2000]
    if upstream:
        asset.failures += 1
        asset.state, asset.last_error = "failing", alloc.reason
    s.flush()
    recount(s, asset)
    return _answer(alloc, None, asset)


def _answer(alloc: Allocation, copy: Copy | None, asset: RescueAsset) -> dict[str, Any]:
    out: dict[str, Any] = {"allocation_id": alloc.id, "status": alloc.status, "asset_id": asset.id,
                           "replicas": asset.replicas, "verified_copies": asset.verified_copies,
                           "conflict": asset.conflict}
    if copy is not None:
        out["copy"] = {"state": copy.state, "verified": copy.verified, "disagreement": copy.disagreement,
                       "sha256": copy.sha256, "size": copy.size}
    return out


def reap(s: Session, *, now: datetime | None = None, limit: int = 1000) -> int:
    """Expire leases past ``expires_at``; their assets go back to the pool. Returns how many expired."""
    now = now or utcnow()
    rows = s.execute(select(Allocation.id, Allocation.asset_id)
                     .where(Allocation.status == "active", Allocation.expires_at < now)
                     .order_by(Allocation.asset_id).limit(limit).with_for_update(skip_locked=True)).all()
    if not rows:
        return 0
    s.execute(update(Allocation).where(Allocation.id.in_([r.id for r in rows])).values(
        status="expired", finished_at=now, reason="lease expired without heartbeat"))
    for asset_id in sorted({r.asset_id for r in rows}):
        asset = s.scalars(select(RescueAsset).where(RescueAsset.id == asset_id).with_for_update()).one()
        recount(s, asset)
    return len(rows)
