"""Keep what discovery finds: organizations, datasets (with history), resources and their assets.

:func:`persist_page` writes one ``package_search`` page with one lookup of
the page's ids and one executemany per table (:class:`earthkeep.rescue.bulk.Bulk`:
rows in the database's form, ids reserved up front, no read-backs): new
datasets are inserted (history ``created``), datasets whose ``metadata_modified``
moved are updated with a ``modified`` history row holding
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
from earthkeep.rescue.bulk import Bulk, Row
from earthkeep.rescue.history import diff
from earthkeep.rescue.tables import ASSET_KINDS, Dataset, DatasetHistory, Organization, RescueAsset, Resource
from earthkeep.sources.ckan import Filters, parse_modified

DOWNLOADABLE = {name for name, ok, _ in ASSET_KINDS if ok}
MAX_INT32 = 2**31 - 1
DATASETS = cast(Table, Dataset.__table__)
HISTORY = cast(Table, DatasetHistory.__table__)
RESOURCES = cast(Table, Resource.__table__)
ASSETS = cast(Table, RescueAsset.__table__)
# what a listing sets on a dataset row (insert and update), in the order of _dataset_row
DATASET_FIELDS = (
    "portal",
    "ckan_id",
    "name",
    "title",
    "organization_id",
    "organization",
    "tags",
    "groups",
    "metadata_modified",
    "modified_raw",
    "popularity",
    "meta",
    "status",
    "last_seen_at",
    "gone_at",
)
MODIFIED = DATASET_FIELDS.index("metadata_modified")
HISTORY_COLUMNS = ("dataset_id", "observed_at", "metadata_modified", "change", "fields", "run_id")
RESOURCE_FIELDS = (
    "dataset_id",
    "ckan_id",
    "name",
    "url",
    "format",
    "mimetype",
    "size",
    "hash",
    "status",
    "meta",
    "updated_at",
)
ASSET_COLUMNS = (
    "dataset_id",
    "resource_id",
    "parent_id",
    "kind",
    "url",
    "url_hash",
    "filename",
    "format",
    "media_type",
    "size",
    "size_source",
    "size_note",
    "sha256_declared",
    "state",
    "pool",
    "last_error",
    "failures",
    "priority",
    "boost",
    "replicas",
    "verified_copies",
    "conflict",
    "created_at",
    "updated_at",
)


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


def _names(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    return sorted({str(i["name"]) for i in items if isinstance(i, dict) and i.get("name")})[:200]


def _popularity(rec: dict[str, Any]) -> int | None:
    ts = rec.get("tracking_summary")
    total = ts.get("total") if isinstance(ts, dict) else None
    ok = isinstance(total, int) and not isinstance(total, bool) and 0 <= total <= MAX_INT32
    return total if ok else None


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
        s.execute(insert(Organization), values)
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


def _dataset_row(b: Bulk, ctx: Context, rec: dict[str, Any], now: Any) -> Row:
    """The listing's values of one dataset (``DATASET_FIELDS`` order), ``now`` already in database form."""
    org = _org_of(rec)
    title = rec.get("title")
    return (
        ctx.portal,
        rec["id"],
        str(rec.get("name") or rec["id"])[:300],
        title if isinstance(title, str) else None,
        ctx.orgs.get(org["id"]) if org else None,
        str(org["name"])[:200] if org else None,
        b.json(_names(rec.get("tags"))),
        b.json(_names(rec.get("groups"))),
        b.time(parse_modified(rec["metadata_modified"])),
        str(rec["metadata_modified"])[:40],
        _popularity(rec),
        b.json(rec),
        "active",
        now,
        None,
    )


def persist_page(s: Session, ctx: Context, records: Sequence[dict[str, Any]]) -> PageResult:
    """Write one page of search results (already checked to have ``id`` and ``metadata_modified``)."""
    res = PageResult()
    now = utcnow()
    b = Bulk(s.connection())
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
    _insert_new(b, ctx, new, now, res)
    _update_changed(s, b, ctx, changed, now, res)
    return res


def _insert_new(b: Bulk, ctx: Context, records: list[dict[str, Any]], now: datetime, res: PageResult) -> None:
    if not records:
        return
    t = b.time(now)
    ids = b.ids(DATASETS, len(records))
    rows = [_dataset_row(b, ctx, r, t) for r in records]
    b.insert(
        DATASETS,
        ("id", *DATASET_FIELDS, "first_seen_at", "boost", "changes"),
        [(did, *row, t, 0.0, 0) for did, row in zip(ids, rows, strict=True)],
    )
    b.insert(
        HISTORY,
        HISTORY_COLUMNS,
        [
            (did, t, row[MODIFIED], "created", b.json({"name": row[2], "title": row[3]}), ctx.run_id)
            for did, row in zip(ids, rows, strict=True)
        ],
    )
    res.created += len(ids)
    _add_resources(b, ctx, [(did, r.get("resources")) for did, r in zip(ids, records, strict=True)], now, res)


def _update_changed(
    s: Session, b: Bulk, ctx: Context, changed: dict[int, dict[str, Any]], now: datetime, res: PageResult
) -> None:
    if not changed:
        return
    t = b.time(now)
    olds = {
        did: (meta, status, n)
        for did, meta, status, n in s.execute(
            select(Dataset.id, Dataset.meta, Dataset.status, Dataset.changes).where(Dataset.id.in_(list(changed)))
        )
    }
    rows, history, resources = [], [], []
    for did, rec in changed.items():
        meta, status, n = olds[did]
        kind = "returned" if status != "active" else "modified"
        row = _dataset_row(b, ctx, rec, t)
        rows.append((*row, (n or 0) + 1, did))
        history.append((did, t, row[MODIFIED], kind, b.json(diff(meta or {}, rec)), ctx.run_id))
        res.returned += kind == "returned"
        res.modified += kind == "modified"
        resources.append((did, rec.get("resources")))
    b.update(DATASETS, (*DATASET_FIELDS, "changes"), rows)
    b.insert(HISTORY, HISTORY_COLUMNS, history)
    _sync_resources(s, b, ctx, resources, now, res)


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


def _resource_row(b: Bulk, did: int, r: dict[str, Any], plan: AssetPlan, now: Any) -> Row:
    """``RESOURCE_FIELDS`` of one resource, ``now`` already in database form."""
    name = r.get("name")
    return (
        did,
        r["id"][:100],
        name if isinstance(name, str) else None,
        r["url"],
        plan.format,
        plan.media_type,
        plan.size,
        str(r.get("hash") or "")[:200] or None,
        "active",
        b.json(r),
        now,
    )


def _add_resources(b: Bulk, ctx: Context, groups: list[tuple[int, Any]], now: datetime, res: PageResult) -> None:
    found = [(did, r, _plan(ctx, r)) for did, raw in groups for r in _valid_resources(raw, res)]
    if not found:
        return
    t = b.time(now)
    rids = b.ids(RESOURCES, len(found))
    b.insert(
        RESOURCES,
        ("id", *RESOURCE_FIELDS),
        [(rid, *_resource_row(b, did, r, plan, t)) for rid, (did, r, plan) in zip(rids, found, strict=True)],
    )
    res.resources += len(rids)
    # new resources have no assets yet: nothing to look up
    res.assets += _write_assets(b, [(did, rid, plan, None) for rid, (did, _, plan) in zip(rids, found, strict=True)], t)


def asset_row(dataset_id: int, resource_id: int, plan: AssetPlan, parent_id: int | None, now: Any) -> Row:
    """The ``ASSET_COLUMNS`` of a new asset, ``now`` in database form."""
    refused = plan.refused is not None
    return (
        dataset_id,
        resource_id,
        parent_id,
        plan.kind,
        plan.url,
        plan.url_hash,
        plan.filename,
        plan.format,
        plan.media_type,
        plan.size,
        plan.size_source,
        plan.size_note,
        plan.sha256,
        "refused" if refused else "new",
        not refused and plan.kind in DOWNLOADABLE,
        plan.refused,
        0,
        0.0,
        0.0,
        0,
        0,
        False,
        now,
        now,
    )


def _write_assets(
    b: Bulk, rows: list[tuple[int, int, AssetPlan, int | None]], now: Any, have: set[tuple[int, str]] | None = None
) -> int:
    """Insert the assets whose (resource, URL) is neither in ``have`` nor earlier in ``rows``."""
    values, seen = [], set(have or ())
    for did, rid, plan, parent in rows:
        key = (rid, plan.url_hash)
        if key not in seen:
            seen.add(key)
            values.append(asset_row(did, rid, plan, parent, now))
    b.insert(ASSETS, ASSET_COLUMNS, values)
    return len(values)


def insert_assets(s: Session, rows: list[tuple[int, int, AssetPlan, int | None]], now: datetime) -> int:
    """Insert assets, skipping URLs a resource already has; returns how many were new."""
    if not rows:
        return 0
    have = set(
        s.execute(
            select(RescueAsset.resource_id, RescueAsset.url_hash).where(
                RescueAsset.resource_id.in_({rid for _, rid, _, _ in rows})
            )
        ).tuples()
    )
    b = Bulk(s.connection())
    return _write_assets(b, rows, b.time(now), have)


def _sync_resources(
    s: Session, b: Bulk, ctx: Context, groups: list[tuple[int, Any]], now: datetime, res: PageResult
) -> None:
    """Resources of modified datasets: add new ones, mark vanished ones removed, follow URL changes."""
    t = b.time(now)
    current: dict[int, dict[str, tuple[int, str]]] = {did: {} for did, _ in groups}
    for rid, did, cid, status in s.execute(
        select(Resource.id, Resource.dataset_id, Resource.ckan_id, Resource.status).where(
            Resource.dataset_id.in_(list(current))
        )
    ):
        current[did][cid] = (rid, status)
    fresh: list[tuple[int, Any]] = []
    kept: list[Row] = []
    moved: list[tuple[int, int, AssetPlan, int | None]] = []
    removed: list[Row] = []
    for did, raw in groups:
        valid = _valid_resources(raw, res)
        ids = {r["id"][:100] for r in valid}
        removed += [
            ("removed", t, rid) for cid, (rid, status) in current[did].items() if cid not in ids and status != "removed"
        ]
        fresh.append((did, [r for r in valid if r["id"][:100] not in current[did]]))
        for r in valid:
            known = current[did].get(r["id"][:100])
            if known is not None:
                plan = _plan(ctx, r)
                kept.append((*_resource_row(b, did, r, plan, t), known[0]))
                moved.append((did, known[0], plan, None))
    b.update(RESOURCES, ("status", "updated_at"), removed)
    b.update(RESOURCES, RESOURCE_FIELDS, kept)
    _add_resources(b, ctx, fresh, now, res)
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
    b = Bulk(s.connection())
    t = b.time(now)
    for ids, status, change in ((vanished, "gone", "gone"), (back, "active", "returned")):
        b.update(DATASETS, ("status", "gone_at"), [(status, t if status == "gone" else None, d) for d in ids])
        b.insert(HISTORY, HISTORY_COLUMNS, [(d, t, None, change, "{}", ctx.run_id) for d in ids])
    return len(vanished), len(back)


def check_record(rec: Any) -> dict[str, Any]:
    """The record if it has an ``id`` and a parseable ``metadata_modified``, else :class:`InvalidInput`."""
    if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
        raise InvalidInput(f"not a dataset object: {str(rec)[:100]!r}")
    parse_modified(rec.get("metadata_modified"))
    return rec
