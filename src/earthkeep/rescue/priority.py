"""The rescue priority of an asset: a documented sum of at-risk signals, weights from ``[rescue]`` settings.

=============  ======================================================  ==========================
component      value                                                   setting
=============  ======================================================  ==========================
gone           ``weight_gone`` when the dataset vanished from the      ``weight_gone`` (100)
               portal (marked by the sweep)
failing        ``weight_failing`` when the asset's URL fails upstream  ``weight_failing`` (40)
               (probe or nodes reported errors)
watch          ``weight_watch`` when the organization is on the watch  ``weight_watch`` (30),
               list                                                    ``watch_orgs``
age            ``weight_age`` * min(days since metadata_modified /     ``weight_age`` (20),
               ``age_full_days``, 1): stale datasets are abandoned      ``age_full_days`` (3650)
               ones
popularity     ``weight_popularity`` * log(1 + views) / log(1 + most   ``weight_popularity`` (10)
               views) when the portal reports ``tracking_summary``
copies         ``weight_copies`` * (1 - min(verified copies,           ``weight_copies`` (50),
               replication) / replication)                             ``replication``
size           - ``weight_size`` * (log10(bytes) - 3) / 9, clamped to  ``weight_size`` (10)
               [0, 1] (1 kB costs nothing, 1 TB the full weight;
               unknown size costs half)
boost          the dataset's plus the asset's manual boost             ``POST /rescue/boosts``
=============  ======================================================  ==========================

:func:`recompute` stores the sum in ``rescue_assets.priority`` (allocation
orders by it); :func:`explain` returns the parts for ``GET /rescue/ranking``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from earthkeep.catalog.tables import utcnow
from earthkeep.errors import InvalidInput, NotFound
from earthkeep.rescue.settings import RescueSettings
from earthkeep.rescue.tables import Dataset, RescueAsset

COLUMNS = (RescueAsset.id, RescueAsset.priority, RescueAsset.boost, RescueAsset.size, RescueAsset.state,
           RescueAsset.verified_copies, Dataset.status, Dataset.organization, Dataset.metadata_modified,
           Dataset.popularity, Dataset.boost.label("dataset_boost"))


@dataclass(frozen=True)
class Signals:
    """The inputs of one asset's score."""

    gone: bool
    failing: bool
    organization: str | None
    modified: datetime | None
    popularity: int | None
    verified_copies: int
    size: int | None
    boost: float


def components(sig: Signals, s: RescueSettings, *, max_popularity: int, now: datetime) -> dict[str, float]:
    """Each named part of the score (see the module docstring); the score is their sum."""
    age_days = (now - sig.modified).total_seconds() / 86400 if sig.modified else s.age_full_days
    pop = 0.0
    if sig.popularity and max_popularity > 0:
        pop = math.log1p(sig.popularity) / math.log1p(max_popularity)
    size_part = 0.5 if sig.size is None else min(max((math.log10(max(sig.size, 1)) - 3) / 9, 0.0), 1.0)
    verified = min(sig.verified_copies, s.replication)
    return {
        "gone": s.weight_gone if sig.gone else 0.0,
        "failing": s.weight_failing if sig.failing else 0.0,
        "watch": s.weight_watch if sig.organization in s.watch_orgs else 0.0,
        "age": round(s.weight_age * min(max(age_days, 0.0) / s.age_full_days, 1.0), 4),
        "popularity": round(s.weight_popularity * pop, 4),
        "copies": round(s.weight_copies * (1 - verified / s.replication), 4),
        "size": round(-s.weight_size * size_part, 4),
        "boost": sig.boost,
    }


def score(parts: dict[str, float]) -> float:
    return round(sum(parts.values()), 4)


def _signals(row: Any) -> Signals:
    return Signals(gone=row.status == "gone", failing=row.state == "failing", organization=row.organization,
                   modified=row.metadata_modified, popularity=row.popularity,
                   verified_copies=row.verified_copies or 0, size=row.size,
                   boost=float(row.boost or 0) + float(row.dataset_boost or 0))


def _max_popularity(s: Session) -> int:
    return int(s.scalar(select(func.max(Dataset.popularity))) or 0)


def recompute(s: Session, settings: RescueSettings, *, batch: int = 5000) -> int:
    """Store every asset's score; returns how many changed."""
    now, top = utcnow(), _max_popularity(s)
    stmt = select(*COLUMNS).join(Dataset, Dataset.id == RescueAsset.dataset_id).order_by(RescueAsset.id)
    changed: list[dict[str, Any]] = []
    total = 0
    for row in s.execute(stmt).all():
        value = score(components(_signals(row), settings, max_popularity=top, now=now))
        if abs(value - (row.priority or 0.0)) > 1e-6:
            changed.append({"id": row.id, "priority": value})
        if len(changed) >= batch:
            s.execute(update(RescueAsset), changed)
            total += len(changed)
            changed = []
    if changed:
        s.execute(update(RescueAsset), changed)
        total += len(changed)
    return total


def explain(s: Session, settings: RescueSettings, *, limit: int = 100, offset: int = 0,
            pool_only: bool = True) -> list[dict[str, Any]]:
    """The ranking, highest first, with each asset's score parts."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000")
    now, top = utcnow(), _max_popularity(s)
    stmt = (select(*COLUMNS, RescueAsset.url, RescueAsset.kind, RescueAsset.replicas, Dataset.name,
                   Dataset.title, RescueAsset.dataset_id)
            .join(Dataset, Dataset.id == RescueAsset.dataset_id)
            .order_by(RescueAsset.priority.desc(), RescueAsset.id).limit(limit).offset(offset))
    if pool_only:
        stmt = stmt.where(RescueAsset.pool.is_(True))
    out = []
    for rank, row in enumerate(s.execute(stmt).all(), start=offset + 1):
        parts = components(_signals(row), settings, max_popularity=top, now=now)
        out.append({"rank": rank, "asset_id": row.id, "dataset_id": row.dataset_id, "dataset": row.name,
                    "title": row.title, "organization": row.organization, "url": row.url, "kind": row.kind,
                    "size": row.size, "state": row.state, "replicas": row.replicas,
                    "verified_copies": row.verified_copies, "score": row.priority, "current": score(parts),
                    "components": parts})
    return out


def set_boost(s: Session, *, boost: float, dataset_id: int | None = None, asset_id: int | None = None) -> None:
    """A manual boost on a dataset (all its assets) or on one asset; recompute to apply it."""
    if (dataset_id is None) == (asset_id is None):
        raise InvalidInput("give exactly one of dataset_id or asset_id")
    if not math.isfinite(boost) or abs(boost) > 1e6:
        raise InvalidInput("boost must be a finite number within ±1e6")
    table = Dataset if dataset_id is not None else RescueAsset
    key = dataset_id if dataset_id is not None else asset_id
    done = s.execute(update(table).where(table.id == key).values(boost=boost))
    if getattr(done, "rowcount", 0) == 0:
        raise NotFound(f"no {'dataset' if dataset_id is not None else 'asset'} {key}")
