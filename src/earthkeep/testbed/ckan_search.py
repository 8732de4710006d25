"""``package_search`` of the CKAN emulator: the Solr subset CKAN clients use (q, fq, sort, start, rows, fl, facets).

Range filters on ``metadata_modified`` use the portal's sorted index (as Solr's
filter cache would); everything else is evaluated per dataset.
"""

from __future__ import annotations

import json
import operator
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from earthkeep.testbed.ckan_catalog import SyntheticPortal

VALUE = r"""\[[^\]}]*[\]}]|\{[^\]}]*[\]}]|\([^)]*\)|"[^"]*"|[^\s()]+"""
TERM = re.compile(r"\s*(?P<op>[+-]?)(?P<field>[A-Za-z_.]+):(?P<value>" + VALUE + r")\s*")
TIME_FIELDS = ("metadata_modified", "metadata_created")
SORTABLE = ("metadata_modified", "metadata_created", "name", "title_string", "score")
DEFAULT_SORT = "score desc, metadata_modified desc"


class SearchError(Exception):
    """A query CKAN/Solr would refuse (the emulator answers 409 ``Search Query Error``)."""


class ParamError(SearchError):
    """A parameter CKAN's validators refuse (409 ``Validation Error``); ``args`` = (field, message)."""


def solr_time(value: str) -> str | None:
    """A Solr date (``2024-01-01T00:00:00Z``, ``*``, ``NOW``) as a CKAN timestamp string, ``None`` for ``*``."""
    value = value.strip().strip('"')
    if value == "*":
        return None
    if value.upper() == "NOW":
        value = datetime.now().isoformat()
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SearchError(f"Invalid Date String:'{value}'") from None
    return ts.replace(tzinfo=None).isoformat(timespec="microseconds")


def _values(ds: dict[str, Any], name: str) -> list[str]:
    if name == "organization":
        return [ds["organization"]["name"]] if ds.get("organization") else []
    if name in ("tags", "groups"):
        return [t["name"] for t in ds.get(name, [])]
    if name == "res_format":
        return [r.get("format", "") for r in ds.get("resources", [])]
    value = ds.get(name)
    return [] if value is None else [str(value)]


Predicate = Callable[[dict[str, Any]], bool]
TimeRange = tuple[str | None, str | None, bool, bool]


def _term(name: str, raw: str) -> tuple[Predicate, TimeRange | None]:
    """A predicate for one ``field:value`` term, and the time range it restricts to (for the index)."""
    if raw[0] in "[{":
        if name not in TIME_FIELDS:
            raise SearchError(f"range queries are only supported on {', '.join(TIME_FIELDS)}")
        parts = raw[1:-1].split(" TO ")
        if len(parts) != 2:
            raise SearchError(f"malformed range {raw!r}")
        lo, hi = solr_time(parts[0]), solr_time(parts[1])
        lo_incl, hi_incl = raw[0] == "[", raw[-1] == "]"

        def in_range(ds: dict[str, Any]) -> bool:
            v = ds[name]
            return ((lo is None or (v >= lo if lo_incl else v > lo))
                    and (hi is None or (v <= hi if hi_incl else v < hi)))

        return in_range, ((lo, hi, lo_incl, hi_incl) if name == "metadata_modified" else None)
    if raw.startswith("("):
        wanted = {w.strip().strip('"') for w in re.split(r"\s+OR\s+", raw[1:-1]) if w.strip()}
    else:
        wanted = {raw.strip('"')}
    if name in TIME_FIELDS:
        wanted = {solr_time(w) or "" for w in wanted}
    return (lambda ds: any(v in wanted for v in _values(ds, name))), None


def parse_query(text: str) -> tuple[list[Callable[[dict[str, Any]], bool]], list[Any]]:
    """Predicates and ``metadata_modified`` ranges of a ``q``/``fq`` string (terms joined by AND)."""
    text = (text or "").strip()
    preds: list[Callable[[dict[str, Any]], bool]] = []
    ranges: list[Any] = []
    if text in ("", "*:*"):
        return preds, ranges
    pos = 0
    while pos < len(text):
        if text.startswith("AND ", pos):
            pos += 4
            continue
        m = TERM.match(text, pos)
        if m is None:
            raise SearchError(f"cannot parse {text[pos:]!r}")
        pred, rng = _term(m["field"], m["value"])
        preds.append(_negate(pred) if m["op"] == "-" else pred)
        if rng and m["op"] != "-":
            ranges.append(rng)
        pos = m.end()
    return preds, ranges


def _negate(pred: Predicate) -> Predicate:
    return lambda ds: not pred(ds)


def _word(w: str) -> Predicate:
    return lambda ds: w in (ds["title"] + " " + (ds.get("notes") or "")).lower() or w in _values(ds, "tags")


def _free_text(q: str) -> list[Predicate]:
    return [_word(w.lower()) for w in q.split()]


def _candidates(portal: SyntheticPortal, ranges: list[Any]) -> list[dict[str, Any]]:
    if not ranges:
        return portal.order
    lo, hi, lo_incl, hi_incl = ranges[0]
    return portal.between(lo, hi, lo_incl, hi_incl)


def _sort(results: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    keys = [k.strip().split() for k in spec.split(",") if k.strip()]
    for parts in reversed(keys):
        if len(parts) != 2 or parts[1] not in ("asc", "desc") or parts[0] not in SORTABLE:
            raise SearchError(f"Can't determine a sort order for sort={spec!r}")
        name = "title" if parts[0] == "title_string" else parts[0]
        if name == "score":
            continue
        results = sorted(results, key=operator.itemgetter(name), reverse=parts[1] == "desc")
    return results


def _fields(fl: Any) -> list[str] | None:
    if fl in (None, "", "*"):
        return None
    names = fl if isinstance(fl, list) else re.split(r"[,\s]+", str(fl))
    return [n for n in names if n]


def search(portal: SyntheticPortal, params: dict[str, Any], *, rows: int, start: int) -> dict[str, Any]:
    """The ``result`` object of ``package_search``."""
    q = str(params.get("q") or "*:*")
    preds, ranges = parse_query(str(params.get("fq") or ""))
    if ":" in q:
        more, more_ranges = parse_query(q)
        preds, ranges = preds + more, ranges + more_ranges
    else:
        preds += _free_text(q)
    matched = [d for d in _candidates(portal, ranges) if all(p(d) for p in preds)]
    spec = str(params.get("sort") or DEFAULT_SORT)
    if spec.replace(" ", "") != "metadata_modifiedasc":  # the index is already in that order
        matched = _sort(matched, spec)
    page = matched[start:start + rows]
    fields = _fields(params.get("fl"))
    results = page if fields is None else [{f: d.get(f) for f in fields} for d in page]
    facets, search_facets = _facets(matched, params.get("facet.field"), params.get("facet.limit", 50))
    return {"count": len(matched), "sort": spec, "results": results, "facets": facets,
            "search_facets": search_facets}


def _facets(matched: list[dict[str, Any]], fields: Any, limit: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if not fields:
        return {}, {}
    if isinstance(fields, str):
        try:
            fields = json.loads(fields)
        except ValueError:
            raise SearchError("facet.field must be a JSON list") from None
    facets, search_facets = {}, {}
    for name in fields:
        counts = Counter(v for d in matched for v in set(_values(d, name)))
        top = counts.most_common(int(limit))
        facets[name] = dict(top)
        search_facets[name] = {"title": name, "items": [{"name": k, "display_name": k, "count": n}
                                                        for k, n in top]}
    return facets, search_facets
