"""Read queries of the rescue catalog: one dataset with its metadata, resources, assets and history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from earthkeep.errors import InvalidInput, NotFound
from earthkeep.rescue.tables import Copy, Dataset, DatasetHistory, RescueAsset


def _dataset(s: Session, dataset_id: int) -> Dataset:
    ds = s.get(Dataset, dataset_id)
    if ds is None:
        raise NotFound(f"no rescue dataset {dataset_id}")
    return ds


def dataset_document(s: Session, dataset_id: int) -> dict[str, Any]:
    """A dataset as we keep it: our fields, its CKAN metadata, its assets."""
    ds = _dataset(s, dataset_id)
    assets = s.scalars(select(RescueAsset).where(RescueAsset.dataset_id == ds.id).order_by(RescueAsset.id))
    return {
        "dataset": {"id": ds.id, "portal": ds.portal, "ckan_id": ds.ckan_id, "name": ds.name, "title": ds.title,
                    "organization": ds.organization, "status": ds.status, "tags": ds.tags, "groups": ds.groups,
                    "metadata_modified": ds.metadata_modified.isoformat() if ds.metadata_modified else None,
                    "first_seen_at": ds.first_seen_at.isoformat(), "last_seen_at": ds.last_seen_at.isoformat(),
                    "gone_at": ds.gone_at.isoformat() if ds.gone_at else None, "changes": ds.changes,
                    "boost": ds.boost},
        "metadata": ds.meta,
        "assets": [{"id": a.id, "kind": a.kind, "url": a.url, "filename": a.filename, "size": a.size,
                    "size_note": a.size_note, "state": a.state, "pool": a.pool, "priority": a.priority,
                    "replicas": a.replicas, "verified_copies": a.verified_copies, "conflict": a.conflict,
                    "parent_id": a.parent_id, "last_error": a.last_error} for a in assets],
    }


def dataset_history(s: Session, dataset_id: int, *, limit: int = 100) -> list[dict[str, Any]]:
    """The dataset's observed changes, newest first."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000")
    _dataset(s, dataset_id)
    rows = s.scalars(select(DatasetHistory).where(DatasetHistory.dataset_id == dataset_id)
                     .order_by(DatasetHistory.id.desc()).limit(limit))
    return [{"id": h.id, "change": h.change, "observed_at": h.observed_at.isoformat(),
             "metadata_modified": h.metadata_modified.isoformat() if h.metadata_modified else None,
             "fields": h.fields, "run_id": h.run_id} for h in rows]


def asset_copies(s: Session, asset_id: int) -> list[dict[str, Any]]:
    """Every copy nodes reported of one asset, and whether they agree."""
    if s.get(RescueAsset, asset_id) is None:
        raise NotFound(f"no rescue asset {asset_id}")
    rows = s.scalars(select(Copy).where(Copy.asset_id == asset_id).order_by(Copy.id))
    return [{"node_id": c.node_id, "size": c.size, "sha256": c.sha256, "state": c.state, "verified": c.verified,
             "disagreement": c.disagreement, "location": c.location, "reported_at": c.reported_at.isoformat()}
            for c in rows]
