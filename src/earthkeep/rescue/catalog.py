"""Keep what discovery finds: organizations, datasets (with history), resources and their assets.

:func:`write_page` keeps one prepared ``package_search`` page
(:func:`earthkeep.rescue.rows.prepare_page`) with one lookup of the page's ids
and a few multi-row statements per table (:class:`earthkeep.rescue.bulk.Bulk`:
ids reserved up front, no read-backs): new datasets are inserted (history
``created``), datasets whose ``metadata_modified`` moved are updated with a
``modified`` history row holding :func:`earthkeep.rescue.history.diff`,
unchanged ones only get ``last_seen_at``. A dataset seen again after being
marked gone comes back (history ``returned``). :func:`persist_page` prepares and
writes in one go. :func:`mark_gone` is the sweep's verdict; nothing is ever deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from earthkeep.catalog.tables import utcnow
from earthkeep.errors import Conflict, InvalidInput
from earthkeep.rescue.assets import AssetPlan
from earthkeep.rescue.bulk import Bulk, Encoder, Row
from earthkeep.rescue.history import diff
from earthkeep.rescue.rows import (
    ASSET_COLUMNS,
    DATASET_FIELDS,
    HISTORY_COLUMNS,
    MAX_ERRORS,
    MODIFIED,
    ORG_ID,
    RESOURCE_FIELDS,
    Context,
    PreparedDataset,
    PreparedPage,
    PreparedResource,
    asset_fields,
    prepare_page,
)
from earthkeep.rescue.tables import Dataset, DatasetHistory, Organization, RescueAsset, Resource
from earthkeep.sources.ckan import Filters, parse_modified

__all__ = ["Context", "PageResult", "check_record", "insert_assets", "mark_gone", "persist_page", "write_page"]

ORGS = cast(Table, Organization.__table__)
DATASETS = cast(Table, Dataset.__table__)
HISTORY = cast(Table, DatasetHistory.__table__)
RESOURCES = cast(Table, Resource.__table__)
ASSETS = cast(Table, RescueAsset.__table__)


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
        self.errors = (self.errors + other.errors)[:MAX_ERRORS]

    def skipped(self, d: PreparedDataset) -> None:
        """Count the invalid resources of a dataset being written."""
        self.invalid += d.invalid
        self.errors = (self.errors + d.errors)[:MAX_ERRORS]


def upsert_orgs(s: Session, ctx: Context, orgs: Iterable[dict[str, Any] | None]) -> None:
    """Insert organizations not yet known; remember their row ids in ``ctx.orgs``."""
    found = {o["id"]: o for o in orgs if o and o["id"] not in ctx.orgs}
    if not found:
        return
    known = select(Organization.ckan_id, Organization.id).where(Organization.portal == ctx.portal)
    ctx.orgs.update(s.execute(known.where(Organization.ckan_id.in_(list(found)))).tuples().all())
    # in one global order (their CKAN ids): two writers inserting the same new organizations then wait
    # for each other in the same order, never each for the other (a deadlock)
    new = sorted((o for cid, o in found.items() if cid not in ctx.orgs), key=lambda o: str(o["id"]))
    if new:
        now = utcnow()
        values = [
            {"portal": ctx.portal, "ckan_id": o["id"], "name": str(o["name"])[:200], "title": o.get("title"),
             "meta": o, "first_seen_at": now, "updated_at": now}
            for o in new
        ]  # fmt: skip
        s.execute(_insert_missing(s, ORGS, ("portal", "ckan_id")), values)
        ctx.orgs.update(s.execute(known.where(Organization.ckan_id.in_([o["id"] for o in new]))).tuples().all())


def _insert_missing(s: Session, table: Table, key: tuple[str, ...]) -> Any:
    """``INSERT`` that skips rows whose ``key`` another transaction inserted meanwhile (PostgreSQL, SQLite).

    Several writers may keep pages of one run at once (PostgreSQL): two pages can
    bring the same new organization, and the second insert then waits for the
    first transaction and skips the row instead of failing the page.
    """
    dialect_insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert  # the two we run on
    return dialect_insert(table).on_conflict_do_nothing(index_elements=list(key))


def persist_page(s: Session, ctx: Context, records: Sequence[dict[str, Any]]) -> PageResult:
    """Prepare and write one page of search results (already checked to have ``id`` and ``metadata_modified``)."""
    return write_page(s, ctx, prepare_page(Encoder(s.get_bind().dialect), ctx, records))


def write_page(s: Session, ctx: Context, page: PreparedPage) -> PageResult:
    """Keep one prepared page in the session's transaction."""
    res = PageResult()
    b = Bulk(s.connection())
    upsert_orgs(s, ctx, (d.org for d in page.datasets))
    existing = {
        cid: (rid, raw, status)
        for rid, cid, raw, status in s.execute(
            select(Dataset.id, Dataset.ckan_id, Dataset.modified_raw, Dataset.status).where(
                Dataset.portal == ctx.portal, Dataset.ckan_id.in_([d.ckan_id for d in page.datasets])
            )
        )
    }
    new, changed, same = [], {}, []
    for d in page.datasets:
        old = existing.get(d.ckan_id)
        if old is None:
            new.append(d)
        elif old[1] != d.modified_raw or old[2] != "active":
            changed[old[0]] = d
        else:
            same.append(old[0])
    if same:
        s.execute(update(Dataset).where(Dataset.id.in_(same)).values(last_seen_at=page.now))
        res.unchanged = len(same)
    _insert_new(b, ctx, new, page.stamp, res)
    _update_changed(s, b, ctx, changed, page.stamp, res)
    return res


def _row(ctx: Context, d: PreparedDataset) -> Row:
    """The dataset's row with its organization's row id."""
    if d.org is None:
        return d.row
    return (*d.row[:ORG_ID], ctx.orgs.get(d.org["id"]), *d.row[ORG_ID + 1 :])


def _insert_new(b: Bulk, ctx: Context, datasets: list[PreparedDataset], stamp: Any, res: PageResult) -> None:
    if not datasets:
        return
    ids = b.ids(DATASETS, len(datasets))
    b.insert(
        DATASETS,
        ("id", *DATASET_FIELDS, "first_seen_at", "boost", "changes"),
        [(did, *_row(ctx, d), stamp, 0.0, 0) for did, d in zip(ids, datasets, strict=True)],
    )
    b.insert(
        HISTORY,
        HISTORY_COLUMNS,
        [
            (did, stamp, d.row[MODIFIED], "created", b.enc.json({"name": d.row[2], "title": d.row[3]}), ctx.run_id)
            for did, d in zip(ids, datasets, strict=True)
        ],
    )
    res.created += len(ids)
    for d in datasets:
        res.skipped(d)
    _add_resources(b, [(did, d.resources) for did, d in zip(ids, datasets, strict=True)], res)


def _update_changed(
    s: Session, b: Bulk, ctx: Context, changed: dict[int, PreparedDataset], stamp: Any, res: PageResult
) -> None:
    if not changed:
        return
    olds = {
        did: (meta, status, n)
        for did, meta, status, n in s.execute(
            select(Dataset.id, Dataset.meta, Dataset.status, Dataset.changes).where(Dataset.id.in_(list(changed)))
        )
    }
    rows, history = [], []
    for did, d in changed.items():
        meta, status, n = olds[did]
        kind = "returned" if status != "active" else "modified"
        rows.append((*_row(ctx, d), (n or 0) + 1, did))
        history.append((did, stamp, d.row[MODIFIED], kind, b.enc.json(diff(meta or {}, d.rec)), ctx.run_id))
        res.returned += kind == "returned"
        res.modified += kind == "modified"
        res.skipped(d)
    b.update(DATASETS, (*DATASET_FIELDS, "changes"), rows)
    b.insert(HISTORY, HISTORY_COLUMNS, history)
    _sync_resources(s, b, changed, stamp, res)


def _add_resources(b: Bulk, groups: list[tuple[int, list[PreparedResource]]], res: PageResult) -> None:
    """Insert new resources, each with its asset (a new resource has none yet: nothing to look up)."""
    found = [(did, r) for did, resources in groups for r in resources]
    if not found:
        return
    rids = b.ids(RESOURCES, len(found))
    b.insert(
        RESOURCES,
        ("id", "dataset_id", *RESOURCE_FIELDS),
        [(rid, did, *r.row) for rid, (did, r) in zip(rids, found, strict=True)],
    )
    b.insert(ASSETS, ASSET_COLUMNS, [(did, rid, None, *r.asset) for rid, (did, r) in zip(rids, found, strict=True)])
    res.resources += len(rids)
    res.assets += len(rids)


def insert_assets(s: Session, rows: list[tuple[int, int, AssetPlan, int | None]], now: datetime) -> int:
    """Insert assets ``(dataset id, resource id, plan, parent id)``, skipping URLs a resource already has.

    Returns how many were new.
    """
    b = Bulk(s.connection())
    return _insert_assets(s, b, rows, b.enc.time(now))


def _insert_assets(s: Session, b: Bulk, rows: list[tuple[int, int, AssetPlan, int | None]], stamp: Any) -> int:
    if not rows:
        return 0
    have = set(
        s.execute(
            select(RescueAsset.resource_id, RescueAsset.url_hash).where(
                RescueAsset.resource_id.in_({rid for _, rid, _, _ in rows})
            )
        ).tuples()
    )
    values = []
    for did, rid, plan, parent in rows:
        if (rid, plan.url_hash) not in have:
            have.add((rid, plan.url_hash))
            values.append((did, rid, parent, *asset_fields(plan, stamp)))
    b.insert(ASSETS, ASSET_COLUMNS, values)
    return len(values)


def _sync_resources(s: Session, b: Bulk, changed: dict[int, PreparedDataset], stamp: Any, res: PageResult) -> None:
    """Resources of modified datasets: add new ones, mark vanished ones removed, follow URL changes."""
    current: dict[int, dict[str, tuple[int, str]]] = {did: {} for did in changed}
    rows = select(Resource.id, Resource.dataset_id, Resource.ckan_id, Resource.status)
    for rid, did, cid, status in s.execute(rows.where(Resource.dataset_id.in_(list(changed)))):
        current[did][cid] = (rid, status)
    fresh: list[tuple[int, list[PreparedResource]]] = []
    kept: list[Row] = []
    moved: list[tuple[int, int, AssetPlan, int | None]] = []
    removed: list[Row] = []
    for did, d in changed.items():
        ids = {r.ckan_id for r in d.resources}
        removed += [
            ("removed", stamp, rid)
            for cid, (rid, status) in current[did].items()
            if cid not in ids and status != "removed"
        ]
        fresh.append((did, [r for r in d.resources if r.ckan_id not in current[did]]))
        for r in d.resources:
            known = current[did].get(r.ckan_id)
            if known is not None:
                kept.append((did, *r.row, known[0]))
                moved.append((did, known[0], r.plan, None))
    b.update(RESOURCES, ("status", "updated_at"), removed)
    b.update(RESOURCES, ("dataset_id", *RESOURCE_FIELDS), kept)
    _add_resources(b, fresh, res)
    res.assets += _insert_assets(s, b, moved, stamp)


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
    b = Bulk(s.connection())
    stamp = b.enc.time(utcnow())
    for ids, status, change in ((vanished, "gone", "gone"), (back, "active", "returned")):
        b.update(DATASETS, ("status", "gone_at"), [(status, stamp if status == "gone" else None, d) for d in ids])
        b.insert(HISTORY, HISTORY_COLUMNS, [(d, stamp, None, change, "{}", ctx.run_id) for d in ids])
    return len(vanished), len(back)


def check_record(rec: Any) -> dict[str, Any]:
    """The record if it has an ``id`` and a parseable ``metadata_modified``, else :class:`InvalidInput`."""
    if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
        raise InvalidInput(f"not a dataset object: {str(rec)[:100]!r}")
    parse_modified(rec.get("metadata_modified"))
    return rec
