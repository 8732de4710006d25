"""What changed between two versions of a dataset's CKAN metadata (stored in ``rescue_dataset_history``).

:func:`diff` returns ``{field: {"old": ..., "new": ...}}`` for plain fields
(long text shortened, with a sha256 of the full value), ``{"added": [...],
"removed": [...]}`` for tags and groups, and for resources ``{"added": [ids],
"removed": [ids], "changed": {id: [fields]}}``. Fields that change on every
harvest without meaning anything (``metadata_modified``, ``revision_id``,
``tracking_summary``) are ignored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

IGNORED = frozenset({"metadata_modified", "revision_id", "tracking_summary", "num_resources", "num_tags",
                     "relationships_as_object", "relationships_as_subject", "organization"})
NAMED_LISTS = ("tags", "groups")
MAX_TEXT = 500


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return {"text": value[:MAX_TEXT] + "…", "length": len(value),
                "sha256": hashlib.sha256(value.encode()).hexdigest()}
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True, default=str)
        if len(text) > MAX_TEXT:
            return {"json": text[:MAX_TEXT] + "…", "length": len(text),
                    "sha256": hashlib.sha256(text.encode()).hexdigest()}
    return value


def _names(items: Any) -> set[str]:
    if not isinstance(items, list):
        return set()
    return {str(i.get("name")) if isinstance(i, dict) else str(i) for i in items}


def _resources(old: Any, new: Any) -> dict[str, Any] | None:
    before = {r.get("id"): r for r in old or [] if isinstance(r, dict)}
    after = {r.get("id"): r for r in new or [] if isinstance(r, dict)}
    added = sorted(str(k) for k in after.keys() - before.keys())
    removed = sorted(str(k) for k in before.keys() - after.keys())
    changed = {}
    for rid in before.keys() & after.keys():
        fields = sorted(k for k in set(before[rid]) | set(after[rid])
                        if k not in ("last_modified", "metadata_modified", "position")
                        and before[rid].get(k) != after[rid].get(k))
        if fields:
            changed[str(rid)] = fields
    if not (added or removed or changed):
        return None
    return {"added": added, "removed": removed, "changed": changed}


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The meaningful differences from ``old`` to ``new`` (empty when none)."""
    out: dict[str, Any] = {}
    for key in sorted(set(old) | set(new)):
        if key in IGNORED or old.get(key) == new.get(key):
            continue
        if key == "resources":
            change = _resources(old.get(key), new.get(key))
            if change:
                out[key] = change
        elif key in NAMED_LISTS:
            a, b = _names(old.get(key)), _names(new.get(key))
            if a != b:
                out[key] = {"added": sorted(b - a), "removed": sorted(a - b)}
        else:
            out[key] = {"old": _short(old.get(key)), "new": _short(new.get(key))}
    old_org = (old.get("organization") or {}).get("name") if isinstance(old.get("organization"), dict) else None
    new_org = (new.get("organization") or {}).get("name") if isinstance(new.get("organization"), dict) else None
    if old_org != new_org:
        out["organization"] = {"old": old_org, "new": new_org}
    return out
