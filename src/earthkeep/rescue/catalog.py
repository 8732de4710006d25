"""Keep what discovery finds: organizations, datasets (with history), resources and their assets.

:func:`persist_page` writes one ``package_search`` page in a few bulk
statements: new datasets are inserted (history ``created``), datasets whose
``metadata_modified`` moved are updated with a ``modified`` history row holding
:func:`earthkeep.rescue.history.diff`, unchanged ones only get ``last_seen_at``.
A dataset seen again after being marked gone comes back (history ``returned``).
:func:`mark_gone` is the sweep's verdict; nothing is ever deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from earthkeep.catalog.tables import utcnow
from earthkeep.errors import Conflict, InvalidInput
from earthkeep.rescue.assets import AssetPlan, plan_resource
from earthkeep.rescue.history import diff
from earthkeep.rescue.tables import ASSET_KINDS, Dataset, DatasetHistory, Organization, RescueAsset, Resource
from earthkeep.sources.ckan import Filters, parse_modified

DOWNLOADABLE = {name for name, ok, _ in ASSET_KINDS if ok}


@dataclass
class PageResult:
    """Counts of one page (or a whole run, summed)."""

    created: int = 0
    modified: int = 0
    unchanged: int = 0
    returned: int = 0
    resources: int = 0
    assets: int = 0
    invalid: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: PageResult) -> None:
        for name in ("created", "modified", "unchanged", "returned", "resources", "assets", "invalid"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors = (self.errors + other.errors)[:20]


@dataclass
class Context:
    """What persisting needs besides the records."""

    portal: str
    run_id: str | None
    max_asset_bytes: int
    allow_private: bool
    orgs: dict[str, int] = field(default_factory=dict)  # ckan org id -> row id


def _table(cls: Any) -> Table:
    """The Core table of a mapped class (plain executemany inserts, no ORM bookkeeping)."""
    return cast(Table, cls.__table__)


def _names(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    return sorted({str(i["name"]) for i in items if isinstance(i, dict) and i.get("name")})[:200]


def _popularity(rec: dict[str, Any]) -> int | None:
    ts = rec.get("tracking_summary")
    total = ts.get("total") if isinstance(ts, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None


def _org_of(rec: dict[str, Any]) -> dict[str, Any] | None:
    org = rec.get("organization")
    return org if isinstance(org, dict) and isinstance(org.get("id"), str) and org.get("name") else None


def upsert_orgs(s: Session, ctx: Context, records: Iterable[dict[str, Any]]) -> None:
    """Insert organizations not yet known; remember their row ids in ``ctx.orgs``."""
    found = {o["id"]: o for r in records if (o := _org_of(r)) and o["id"] not in ctx.orgs}
    if not found:
        return
    rows = s.execute(
        select(Organization.ckan_id, Organization.id).where(
            Organization.portal == ctx.portal, Organization.ckan_id.in_(list(found))
        )
    )
    ctx.orgs.update({cid: rid for cid, rid in rows})
    new = [o for cid, o in found.items() if cid not in ctx.orgs]
    if new:
        now = utcnow()
        values = [
            {
                "portal": ctx.portal,
                "ckan_id": o["id"],
                "name": str(o["name"])[:200],
                "title": o.get("title"),
                "meta": o,
                "first_seen_at": now,
                "updated_at": now,
            }
            for o in new
        ]
        s.execute(insert(_table(Organization)), values)
        ctx.orgs.update(
            {
                cid: rid
                for cid, rid in s.execute(
                    select(Organization.ckan_id, Organization.id).where(
                        Organization.portal == ctx.portal, Organization.ckan_id.in_([o["id"] for o in new])
                    )
                )
            }
        )


def _dataset_values(ctx: Context, rec: dict[str, Any], now: datetime) -> dict[str, Any]:
    org = _org_of(rec)
    return {
        "portal": ctx.portal,
        "ckan_id": rec["id"],
        "name": str(rec.get("name") or rec["id"])[:300],
        "title": rec.get("title") if isinstance(rec.get("title"), str) else None,
        "organization_id": ctx.orgs.get(org["id"]) if org else None,
        "organization": str(org["name"])[:200] if org else None,
        "tags": _names(rec.get("tags")),
        "groups": _names(rec.get("groups")),
        "metadata_modified": parse_modified(rec["metadata_modified"]),
        "modified_raw": str(rec["metadata_modified"])[:40],
        "popularity": _popularity(rec),
        "meta": rec,
        "status": "active",
        "last_seen_at": now,
        "gone_at": None,
    }


def persist_page(s: Session, ctx: Context, records: Sequence[dict[str, Any]]) -> PageResult:
    """Write one page of search results (already checked to have ``id`` and ``metadata_modified``)."""
    res = PageResult()
    now = utcnow()
    upsert_orgs(s, ctx, records)
    by_id = {r["id"]: r for r in records}
    existing = {
        cid: (rid, raw, status)
        for rid, cid, raw, status in s.execute(
            select(Dataset.id, Dataset.ckan_id, Dataset.modified_raw, Dataset.status).where(
                Dataset.portal == ctx.portal, Dataset.ckan_id.in_(list(by_id))
            )
        )
    }
    new = [r for cid, r in by_id.items() if cid not in existing]
    changed = {
        existing[cid][0]: r
        for cid, r in by_id.items()
        if cid in existing and (existing[cid][1] != str(r["metadata_modified"])[:40] or existing[cid][2] != "active")
    }
    same = [existing[cid][0] for cid, r in by_id.items() if cid in existing and existing[cid][0] not in changed]
    if same:
        s.execute(update(Dataset).where(Dataset.id.in_(same)).values(last_seen_at=now))
        res.unchanged = len(same)
    _insert_new(s, ctx, new, now, res)
    _update_changed(s, ctx, changed, now, res)
    return res


def _insert_new(s: Session, ctx: Context, records: list[dict[str, Any]], now: datetime, res: PageResult) -> None:
    if not records:
        return
    values = [{**_dataset_values(ctx, r, now), "first_seen_at": now, "boost": 0.0, "changes": 0} for r in records]
    # executemany without RETURNING (SQLite would insert row by row to keep RETURNING ordered), then
    # read the ids back through the unique key
    s.execute(insert(_table(Dataset)), values)
    by_ckan: dict[str, int] = {
        cid: did
        for cid, did in s.execute(
            select(Dataset.ckan_id, Dataset.id).where(
                Dataset.portal == ctx.portal, Dataset.ckan_id.in_([v["ckan_id"] for v in values])
            )
        )
    }
    ids = [by_ckan[v["ckan_id"]] for v in values]
    s.execute(
        insert(_table(DatasetHistory)),
        [
            {
                "dataset_id": did,
                "observed_at": now,
                "metadata_modified": v["metadata_modified"],
                "change": "created",
                "fields": {"name": v["name"], "title": v["title"]},
                "run_id": ctx.run_id,
            }
            for did, v in zip(ids, values, strict=True)
        ],
    )
    res.created += len(ids)
    _add_resources(s, ctx, [(did, r.get("resources")) for did, r in zip(ids, records, strict=True)], now, res)


def _update_changed(
    s: Session, ctx: Context, changed: dict[int, dict[str, Any]], now: datetime, res: PageResult
) -> None:
    if not changed:
        return
    olds = {d.id: d for d in s.scalars(select(Dataset).where(Dataset.id.in_(list(changed))))}
    history, resources = [], []
    for did, rec in changed.items():
        old = olds[did]
        fields = diff(old.meta or {}, rec)
        kind = "returned" if old.status != "active" else "modified"
        history.append(
            {
                "dataset_id": did,
                "observed_at": now,
                "metadata_modified": parse_modified(rec["metadata_modified"]),
                "change": kind,
                "fields": fields,
                "run_id": ctx.run_id,
            }
        )
        for key, value in _dataset_values(ctx, rec, now).items():
            setattr(old, key, value)
        old.changes = (old.changes or 0) + 1
        res.returned += kind == "returned"
        res.modified += kind == "modified"
        resources.append((did, rec.get("resources")))
    s.flush()
    s.execute(insert(_table(DatasetHistory)), history)
    _sync_resources(s, ctx, resources, now, res)


def _valid_resources(raw: Any, res: PageResult) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        return []
    out, seen = [], set()
    for r in raw:
        if (
            isinstance(r, dict)
            and isinstance(r.get("id"), str)
            and r["id"]
            and isinstance(r.get("url"), str)
            and r["id"][:100] not in seen
        ):
            seen.add(r["id"][:100])
            out.append(r)
        else:
            res.invalid += 1
            if len(res.errors) < 20:
                res.errors.append(f"resource without id or url skipped: {str(r)[:100]}")
    return out


def _plan(ctx: Context, r: dict[str, Any]) -> AssetPlan:
    return plan_resource(r, max_bytes=ctx.max_asset_bytes, allow_private=ctx.allow_private)


def _resource_values(did: int, r: dict[str, Any], plan: AssetPlan, now: datetime) -> dict[str, Any]:
    return {
        "dataset_id": did,
        "ckan_id": r["id"][:100],
        "name": r.get("name") if isinstance(r.get("name"), str) else None,
        "url": r["url"],
        "format": plan.format,
        "mimetype": plan.media_type,
        "size": plan.size,
        "hash": str(r.get("hash") or "")[:200] or None,
        "status": "active",
        "meta": r,
        "updated_at": now,
    }


def _add_resources(s: Session, ctx: Context, groups: list[tuple[int, Any]], now: datetime, res: PageResult) -> None:
    values, plans = [], []
    for did, raw in groups:
        for r in _valid_resources(raw, res):
            plan = _plan(ctx, r)
            values.append(_resource_values(did, r, plan, now))
            plans.append(plan)
    if not values:
        return
    s.execute(insert(_table(Resource)), values)
    keys = {
        (d, c): i
        for i, d, c in s.execute(
            select(Resource.id, Resource.dataset_id, Resource.ckan_id).where(
                Resource.dataset_id.in_({v["dataset_id"] for v in values})
            )
        ).all()
    }
    rids = [keys[(v["dataset_id"], v["ckan_id"])] for v in values]
    res.resources += len(rids)
    insert_assets(s, [(v["dataset_id"], rid, p, None) for v, rid, p in zip(values, rids, plans, strict=True)], now)
    res.assets += len(rids)


def asset_values(
    dataset_id: int, resource_id: int, plan: AssetPlan, parent_id: int | None, now: datetime
) -> dict[str, Any]:
    """The row of a new asset."""
    refused = plan.refused is not None
    return {
        "dataset_id": dataset_id,
        "resource_id": resource_id,
        "parent_id": parent_id,
        "kind": plan.kind,
        "url": plan.url,
        "url_hash": plan.url_hash,
        "filename": plan.filename,
        "format": plan.format,
        "media_type": plan.media_type,
        "size": plan.size,
        "size_source": plan.size_source,
        "size_note": plan.size_note,
        "sha256_declared": plan.sha256,
        "state": "refused" if refused else "new",
        "pool": not refused and plan.kind in DOWNLOADABLE,
        "last_error": plan.refused,
        "failures": 0,
        "priority": 0.0,
        "boost": 0.0,
        "replicas": 0,
        "verified_copies": 0,
        "conflict": False,
        "created_at": now,
        "updated_at": now,
    }


def insert_assets(s: Session, rows: list[tuple[int, int, AssetPlan, int | None]], now: datetime) -> int:
    """Insert assets, skipping URLs a resource already has; returns how many were new."""
    if not rows:
        return 0
    keys = {(rid, p.url_hash) for _, rid, p, _ in rows}
    have = set(
        s.execute(
            select(RescueAsset.resource_id, RescueAsset.url_hash).where(
                RescueAsset.resource_id.in_({k[0] for k in keys})
            )
        ).all()
    )
    values, seen = [], set()
    for did, rid, plan, parent in rows:
        key = (rid, plan.url_hash)
        if key in have or key in seen:
            continue
        seen.add(key)
        values.append(asset_values(did, rid, plan, parent, now))
    if values:
        s.execute(insert(_table(RescueAsset)), values)
    return len(values)


def _sync_resources(s: Session, ctx: Context, groups: list[tuple[int, Any]], now: datetime, res: PageResult) -> None:
    """Resources of modified datasets: add new ones, mark vanished ones removed, follow URL changes."""
    dids = [did for did, _ in groups]
    current = {(r.dataset_id, r.ckan_id): r for r in s.scalars(select(Resource).where(Resource.dataset_id.in_(dids)))}
    fresh: list[tuple[int, Any]] = []
    moved: list[tuple[int, int, AssetPlan, int | None]] = []
    for did, raw in groups:
        valid = _valid_resources(raw, res)
        ids = {r["id"][:100] for r in valid}
        for (d, cid), row in current.items():
            if d == did and cid not in ids and row.status != "removed":
                row.status, row.updated_at = "removed", now
        new = [r for r in valid if (did, r["id"][:100]) not in current]
        fresh.append((did, new))
        for r in valid:
            known = current.get((did, r["id"][:100]))
            if known is not None:
                plan = _plan(ctx, r)
                for key, value in _resource_values(did, r, plan, now).items():
                    setattr(known, key, value)
                moved.append((did, known.id, plan, None))
    s.flush()
    _add_resources(s, ctx, fresh, now, res)
    res.assets += insert_assets(s, moved, now)


def mark_gone(
    s: Session, ctx: Context, filters: Filters, live: set[str], *, max_fraction: float, force: bool = False
) -> tuple[int, int]:
    """Datasets in scope missing from ``live`` become gone; gone ones found again return. Never deletes."""
    rows = s.execute(
        select(Dataset.id, Dataset.ckan_id, Dataset.status, Dataset.organization, Dataset.groups, Dataset.tags).where(
            Dataset.portal == ctx.portal
        )
    ).all()
    scope = [r for r in rows if filters.matches(r.organization, r.groups or [], r.tags or [])]
    vanished = [r.id for r in scope if r.status == "active" and r.ckan_id not in live]
    back = [r.id for r in scope if r.status == "gone" and r.ckan_id in live]
    active = sum(1 for r in scope if r.status == "active")
    if active and len(vanished) / active > max_fraction and not force:
        raise Conflict(
            f"{ctx.portal}: the sweep would mark {len(vanished)} of {active} datasets gone; refused "
            f"(over max_gone_fraction={max_fraction}); is the portal degraded? rerun with force"
        )
    now = utcnow()
    for ids, status, change in ((vanished, "gone", "gone"), (back, "active", "returned")):
        for i in range(0, len(ids), 1000):
            chunk = ids[i : i + 1000]
            s.execute(
                update(Dataset)
                .where(Dataset.id.in_(chunk))
                .values(status=status, gone_at=now if status == "gone" else None)
            )
            history = [
                {
                    "dataset_id": d,
                    "observed_at": now,
                    "metadata_modified": None,
                    "change": change,
                    "fields": {},
                    "run_id": ctx.run_id,
                }
                for d in chunk
            ]
            s.execute(insert(_table(DatasetHistory)), history)
    return len(vanished), len(back)


def check_record(rec: Any) -> dict[str, Any]:
    """The record if it has an ``id`` and a parseable ``metadata_modified``, else :class:`InvalidInput`."""
    if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
        raise InvalidInput(f"not a dataset object: {str(rec)[:100]!r}")
    parse_modified(rec.get("metadata_modified"))
    return rec
