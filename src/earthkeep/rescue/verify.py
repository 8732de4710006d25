"""Cross-verification of the copies nodes report, and the exact replica count of an asset.

For one asset (its row locked by the caller):

* with a sha256 declared by the portal, a copy matching it is ``verified`` and
  one that does not ``disagrees``;
* otherwise copies are grouped by (sha256, size): a group of two or more that
  outnumbers every other is the consensus (its copies ``verified``, the rest
  ``disagrees``); with no such group, a lone copy stays ``unconfirmed`` and
  several different ones are all ``disputed``.

A copy that ``disagrees`` is flagged (``disagreement``) and does not count as a
replica, so the asset goes back to the pool for another node. While an asset
has disputed or disagreeing copies it is in ``conflict`` and may get one copy
more than the target replication (a tie-breaker).
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from earthkeep.catalog.tables import utcnow
from earthkeep.rescue.tables import Allocation, Copy, RescueAsset


def _states(copies: list[Copy], declared: str | None) -> tuple[dict[int, str], str | None]:
    if declared:
        return {c.id: "verified" if c.sha256 == declared else "disagrees" for c in copies}, declared
    groups = Counter((c.sha256, c.size) for c in copies)
    ranked = groups.most_common()
    if ranked and ranked[0][1] >= 2 and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
        winner = ranked[0][0]
        return {c.id: "verified" if (c.sha256, c.size) == winner else "disagrees" for c in copies}, winner[0]
    if len(ranked) <= 1:
        return {c.id: "unconfirmed" for c in copies}, None
    return {c.id: "disputed" for c in copies}, None


def cross_check(s: Session, asset: RescueAsset) -> None:
    """Set every copy's state and the asset's ``verified_copies``, ``consensus_sha256`` and ``conflict``."""
    copies = list(s.scalars(select(Copy).where(Copy.asset_id == asset.id).order_by(Copy.id)))
    states, consensus = _states(copies, asset.sha256_declared)
    now = utcnow()
    for c in copies:
        state = states[c.id]
        if state == "verified" and not c.verified:
            c.verified_at = now
        c.state, c.verified = state, state == "verified"
        c.disagreement = state in ("disagrees", "disputed")
    asset.verified_copies = sum(1 for c in copies if c.verified)
    asset.consensus_sha256 = consensus
    asset.conflict = any(c.disagreement for c in copies)
    if consensus and asset.size is None:
        sizes = {c.size for c in copies if c.verified}
        if len(sizes) == 1:
            asset.size, asset.size_source = sizes.pop(), "node"
    s.flush()


def recount(s: Session, asset: RescueAsset) -> int:
    """``replicas`` = active leases + copies that do not disagree (the caller holds the asset's row lock)."""
    active = s.scalar(select(func.count()).select_from(Allocation).where(
        Allocation.asset_id == asset.id, Allocation.status == "active")) or 0
    held = s.scalar(select(func.count()).select_from(Copy).where(
        Copy.asset_id == asset.id, Copy.state != "disagrees")) or 0
    asset.replicas = int(active) + int(held)
    asset.updated_at = utcnow()
    s.flush()
    return asset.replicas
