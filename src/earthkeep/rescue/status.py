"""``GET /status``: totals of the rescue (datasets, assets, bytes, copies, in flight) and per node."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from earthkeep.rescue.settings import RescueSettings
from earthkeep.rescue.tables import Allocation, Copy, Dataset, Node, RescueAsset


def _datasets(s: Session) -> dict[str, int]:
    rows: dict[str, int] = {k: n for k, n in s.execute(select(Dataset.status, func.count()).group_by(Dataset.status))}
    return {"total": sum(rows.values()), "active": rows.get("active", 0), "gone": rows.get("gone", 0)}


def _assets(s: Session, settings: RescueSettings) -> dict[str, Any]:
    row = s.execute(select(
        func.count(), func.coalesce(func.sum(RescueAsset.size), 0),
        func.sum(case((RescueAsset.pool.is_(True), 1), else_=0)),
        func.sum(case((RescueAsset.size.is_(None), 1), else_=0)),
        func.sum(case((RescueAsset.verified_copies >= settings.replication, 1), else_=0)),
        func.sum(case((RescueAsset.conflict.is_(True), 1), else_=0)),
    )).one()
    by_state = {k: n for k, n in s.execute(select(RescueAsset.state, func.count()).group_by(RescueAsset.state))}
    by_kind = {k: n for k, n in s.execute(select(RescueAsset.kind, func.count()).group_by(RescueAsset.kind))}
    return {"total": row[0], "bytes_known": int(row[1]), "in_pool": int(row[2] or 0),
            "size_unknown": int(row[3] or 0), "fully_replicated": int(row[4] or 0), "conflicts": int(row[5] or 0),
            "by_state": by_state, "by_kind": by_kind}


def _copies(s: Session) -> dict[str, Any]:
    rows = s.execute(select(Copy.state, func.count(), func.coalesce(func.sum(Copy.size), 0))
                     .group_by(Copy.state)).all()
    by_state = {state: {"copies": n, "bytes": int(b)} for state, n, b in rows}
    return {"total": sum(v["copies"] for v in by_state.values()),
            "bytes": sum(v["bytes"] for v in by_state.values()),
            "verified": by_state.get("verified", {}).get("copies", 0),
            "disagreeing": by_state.get("disagrees", {}).get("copies", 0)
            + by_state.get("disputed", {}).get("copies", 0), "by_state": by_state}


def _nodes(s: Session) -> list[dict[str, Any]]:
    leases: dict[int, dict[str, tuple[int, int]]] = {}
    for node_id, status, n, b in s.execute(select(Allocation.node_id, Allocation.status, func.count(),
                                                  func.coalesce(func.sum(Allocation.reserved_bytes), 0))
                                           .group_by(Allocation.node_id, Allocation.status)).all():
        leases.setdefault(node_id, {})[status] = (n, int(b))
    held = {node_id: (n, int(b)) for node_id, n, b in s.execute(
        select(Copy.node_id, func.count(), func.coalesce(func.sum(Copy.size), 0)).group_by(Copy.node_id)).all()}
    out = []
    for node in s.scalars(select(Node).order_by(Node.id)):
        mine = leases.get(node.id, {})
        out.append({"id": node.id, "name": node.name, "capacity_bytes": node.capacity_bytes,
                    "free_bytes": node.free_bytes, "last_seen_at": node.last_seen_at.isoformat(),
                    "in_flight": mine.get("active", (0, 0))[0], "in_flight_bytes": mine.get("active", (0, 0))[1],
                    "done": mine.get("done", (0, 0))[0], "failed": mine.get("failed", (0, 0))[0],
                    "expired": mine.get("expired", (0, 0))[0], "copies": held.get(node.id, (0, 0))[0],
                    "bytes_held": held.get(node.id, (0, 0))[1]})
    return out


def status(s: Session, settings: RescueSettings) -> dict[str, Any]:
    """Everything ``GET /status`` shows."""
    nodes = _nodes(s)
    return {
        "datasets": _datasets(s), "assets": _assets(s, settings), "copies": _copies(s),
        "in_flight": {"leases": sum(n["in_flight"] for n in nodes),
                      "bytes": sum(n["in_flight_bytes"] for n in nodes)},
        "replication": settings.replication, "nodes": nodes,
    }
