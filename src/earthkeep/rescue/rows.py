"""From listed CKAN records to catalog rows (pure: no database, no network).

Preparing a page is the Python half of keeping it: an asset plan for every
resource, the JSON text of the metadata, and row tuples in the order of the
column lists below with values in the database's form
(:class:`~earthkeep.rescue.bulk.Encoder`). Discovery prepares the next page while
the previous one is being written; the writer (:mod:`earthkeep.rescue.catalog`)
adds only what needs the database: row ids, organization ids, and whether each
dataset is new, changed or unchanged (an unchanged one uses none of its rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from earthkeep.catalog.tables import utcnow
from earthkeep.rescue.assets import AssetPlan, plan_resource
from earthkeep.rescue.bulk import Encoder, Row
from earthkeep.rescue.tables import ASSET_KINDS
from earthkeep.sources.ckan import parse_modified

_new = tuple.__new__  # a named tuple from its fields in order, without the keyword handling
DOWNLOADABLE = frozenset(name for name, ok, _ in ASSET_KINDS if ok)
MAX_INT32 = 2**31 - 1
MAX_ERRORS = 20
# what a listing sets on a dataset row (insert and update)
DATASET_FIELDS = (
    "portal", "ckan_id", "name", "title", "organization_id", "organization", "tags", "groups",
    "metadata_modified", "modified_raw", "popularity", "meta", "status", "last_seen_at", "gone_at",
)  # fmt: skip
ORG_ID = DATASET_FIELDS.index("organization_id")
MODIFIED = DATASET_FIELDS.index("metadata_modified")
HISTORY_COLUMNS = ("dataset_id", "observed_at", "metadata_modified", "change", "fields", "run_id")
# a resource row after its dataset_id
RESOURCE_FIELDS = ("ckan_id", "name", "url", "format", "mimetype", "size", "hash", "status", "meta", "updated_at")
# an asset row after dataset_id, resource_id, parent_id
ASSET_FIELDS = (
    "kind", "url", "url_hash", "filename", "format", "media_type", "size", "size_source", "size_note",
    "sha256_declared", "state", "pool", "last_error", "failures", "priority", "boost", "replicas",
    "verified_copies", "conflict", "created_at", "updated_at",
)  # fmt: skip
ASSET_COLUMNS = ("dataset_id", "resource_id", "parent_id", *ASSET_FIELDS)


@dataclass
class Context:
    """What keeping a page needs besides the records; ``orgs`` is filled by the writer."""

    portal: str
    run_id: str | None
    max_asset_bytes: int
    allow_private: bool
    orgs: dict[str, int] = field(default_factory=dict)  # ckan org id -> row id


class PreparedResource(NamedTuple):
    """One valid resource: its plan, its row (``RESOURCE_FIELDS``) and its asset (``ASSET_FIELDS``).

    Named tuples, not frozen dataclasses: tens of thousands are made per run, at a fifth of the cost.
    """

    ckan_id: str
    plan: AssetPlan
    row: Row
    asset: Row


class PreparedDataset(NamedTuple):
    """One record: its row (``DATASET_FIELDS``, organization id not yet known), resources, what was skipped."""

    rec: dict[str, Any]
    org: dict[str, Any] | None
    row: Row
    resources: list[PreparedResource]
    invalid: int
    errors: list[str]

    @property
    def ckan_id(self) -> str:
        return str(self.rec["id"])

    @property
    def modified_raw(self) -> str:
        return str(self.rec["metadata_modified"])[:40]


@dataclass(frozen=True)
class PreparedPage:
    """A prepared page and the moment it was prepared (``stamp``: the same in database form)."""

    now: datetime
    stamp: Any
    datasets: list[PreparedDataset]


def prepare_page(enc: Encoder, ctx: Context, records: Sequence[dict[str, Any]]) -> PreparedPage:
    """Rows of every record (already checked to have ``id`` and ``metadata_modified``); the last of a repeated id."""
    now = utcnow()
    stamp = enc.time(now)
    by_id = {r["id"]: r for r in records}
    return PreparedPage(now, stamp, [prepare_dataset(enc, ctx, r, stamp) for r in by_id.values()])


def prepare_dataset(enc: Encoder, ctx: Context, rec: dict[str, Any], stamp: Any) -> PreparedDataset:
    org = org_of(rec)
    title = rec.get("title")
    row = (
        ctx.portal, rec["id"], str(rec.get("name") or rec["id"])[:300], title if isinstance(title, str) else None,
        None, str(org["name"])[:200] if org else None,
        enc.json(_names(rec.get("tags"))), enc.json(_names(rec.get("groups"))),
        enc.time(parse_modified(rec["metadata_modified"])), str(rec["metadata_modified"])[:40],
        _popularity(rec), enc.json(rec), "active", stamp, None,
    )  # fmt: skip
    valid, errors = _valid_resources(rec.get("resources"))
    resources = [prepare_resource(enc, ctx, r, stamp) for r in valid]
    return _new(PreparedDataset, (rec, org, row, resources, len(errors), errors[:MAX_ERRORS]))


def prepare_resource(enc: Encoder, ctx: Context, r: dict[str, Any], stamp: Any) -> PreparedResource:
    plan = plan_resource(r, max_bytes=ctx.max_asset_bytes, allow_private=ctx.allow_private)
    name = r.get("name")
    cid = r["id"][:100]
    row = (
        cid, name if isinstance(name, str) else None, r["url"], plan.format, plan.media_type, plan.size,
        str(r.get("hash") or "")[:200] or None, "active", enc.json(r), stamp,
    )  # fmt: skip
    return _new(PreparedResource, (cid, plan, row, asset_fields(plan, stamp)))


def asset_fields(plan: AssetPlan, stamp: Any) -> Row:
    """``ASSET_FIELDS`` of a new asset (``stamp``: now, in database form)."""
    refused = plan.refused is not None
    return (
        plan.kind, plan.url, plan.url_hash, plan.filename, plan.format, plan.media_type, plan.size,
        plan.size_source, plan.size_note, plan.sha256, "refused" if refused else "new",
        not refused and plan.kind in DOWNLOADABLE, plan.refused, 0, 0.0, 0.0, 0, 0, False, stamp, stamp,
    )  # fmt: skip


def org_of(rec: dict[str, Any]) -> dict[str, Any] | None:
    """The record's organization if it has an id and a name."""
    org = rec.get("organization")
    return org if isinstance(org, dict) and isinstance(org.get("id"), str) and org.get("name") else None


def _names(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    return sorted({str(i["name"]) for i in items if isinstance(i, dict) and i.get("name")})[:200]


def _popularity(rec: dict[str, Any]) -> int | None:
    ts = rec.get("tracking_summary")
    total = ts.get("total") if isinstance(ts, dict) else None
    ok = isinstance(total, int) and not isinstance(total, bool) and 0 <= total <= MAX_INT32
    return total if ok else None


def _valid_resources(raw: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Resources with a string id (first of a repeated one) and URL; why each other one was skipped."""
    if not isinstance(raw, list):
        return [], []
    out, seen, errors = [], set(), []
    for r in raw:
        if isinstance(r, dict) and isinstance(r.get("id"), str) and r["id"] and isinstance(r.get("url"), str):
            key = r["id"][:100]
            if key not in seen:
                seen.add(key)
                out.append(r)
                continue
        errors.append(f"resource without id or url skipped: {str(r)[:100]}")
    return out, errors
