"""STAC API search parameters from a GET query or a POST body: checked strictly, never ignored.

Every error is an :class:`InvalidInput` whose message starts with the parameter's name; the STAC
router answers it with 400 ``{"code": "InvalidParameterValue", "description": ...}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import cql2
from starlette.datastructures import QueryParams

from earthkeep.catalog.filters import check_crs, parse_filter
from earthkeep.catalog.items import SORT_FIELDS, BBox, check_bbox, check_geometry
from earthkeep.catalog.stac import Fields
from earthkeep.errors import InvalidInput

MAX_LIMIT = 1000  # larger limits are capped to this, never refused
DEFAULT_LIMIT = 100
SEARCH_PARAMS = ("collections", "ids", "bbox", "intersects", "datetime", "limit", "token", "sortby", "fields",
                 "filter", "filter-lang", "filter-crs")
ITEMS_PARAMS = ("bbox", "datetime", "limit", "token", "sortby", "fields")
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})")


@dataclass(frozen=True)
class SearchParams:
    """One search, whichever way it came."""

    collections: Sequence[str] = ()
    ids: Sequence[str] = ()
    bbox: BBox | None = None
    intersects: dict[str, Any] | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = DEFAULT_LIMIT
    token: str | None = None
    sortby: Sequence[tuple[str, bool]] = ()
    fields: Fields | None = None
    filter: cql2.Expr | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # the POST body, for the next link


def _refuse_unknown(given: Sequence[str], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise InvalidInput(f"{', '.join(unknown)}: unsupported {where} "
                           f"{'parameter' if len(unknown) == 1 else 'parameters'}; supported: {', '.join(allowed)}")


def parse_instant(text: str, name: str = "datetime") -> datetime:
    """One RFC 3339 date-time (``T``/``t`` separator, ``Z`` or ``±hh:mm`` zone) -> aware UTC datetime."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise InvalidInput(f"{name}: {text!r} is not an RFC 3339 date-time such as 2024-01-01T00:00:00Z")
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        tz = UTC if zone in "Zz" else timezone(int(zone[0] + "1") * timedelta(hours=int(zone[1:3]),
                                                                             minutes=int(zone[4:6])))
        leap = int(s) == 60  # a leap second: the last instant of the minute before
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi), 59 if leap else int(s),
                      999999 if leap else int(((frac or "") + "000000")[:6]), tzinfo=tz)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {text!r} is not a valid date-time ({exc})") from exc
    return dt.astimezone(UTC)


def parse_datetime(value: str) -> tuple[datetime | None, datetime | None]:
    """STAC ``datetime``: an instant, or ``start/end`` with ``..`` or nothing for one open end."""
    parts = value.split("/")
    if len(parts) > 2:
        raise InvalidInput(f"datetime: {value!r} has more than one '/'; give an instant or start/end")
    if len(parts) == 1:
        t = parse_instant(value)
        return t, t
    start, end = (None if p in ("", "..") else parse_instant(p) for p in parts)
    if start is None and end is None:
        raise InvalidInput(f"datetime: {value!r} is open at both ends; give at least one date-time")
    if start and end and start > end:
        raise InvalidInput(f"datetime: {value!r} starts after it ends")
    return start, end


def parse_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(f"limit: {value!r} is not an integer")
    try:
        n = int(value)
    except ValueError:
        raise InvalidInput(f"limit: {value!r} is not an integer") from None
    if n < 1:
        raise InvalidInput(f"limit: {n} is below 1")
    return min(n, MAX_LIMIT)


def _bbox(values: Sequence[Any]) -> BBox:
    """4 numbers, or 6 (with min and max elevation, which items do not have: ignored)."""
    if len(values) == 6:
        values = [values[0], values[1], values[3], values[4]]
    if len(values) != 4 or any(isinstance(v, bool) or not isinstance(v, int | float | str) for v in values):
        raise InvalidInput("bbox: give 4 numbers: west,south,east,north (or 6, with elevations)")
    try:
        return check_bbox([float(v) for v in values])
    except ValueError:
        raise InvalidInput("bbox: give 4 numbers: west,south,east,north (or 6, with elevations)") from None
    except InvalidInput as exc:
        raise InvalidInput(f"bbox: {exc}") from exc


def _geometry(value: Any) -> dict[str, Any]:
    try:
        check_geometry(value)
    except InvalidInput as exc:
        raise InvalidInput(f"intersects: {exc}") from exc
    return dict(value)


def _sort_field(name: str) -> str:
    bare = name.removeprefix("properties.")
    if bare not in SORT_FIELDS:
        raise InvalidInput(f"sortby: cannot sort by {name!r}; sortable: {', '.join(SORT_FIELDS)}")
    return bare


def _sortby_text(value: str) -> list[tuple[str, bool]]:
    out = []
    for part in value.split(","):
        part = part.strip()  # a '+' sent unencoded in a URL arrives as a space
        if not part:
            raise InvalidInput(f"sortby: {value!r} has an empty field")
        out.append((_sort_field(part.lstrip("+-")), part.startswith("-")))
    return out


def _sortby_json(value: Any) -> list[tuple[str, bool]]:
    if not isinstance(value, list):
        raise InvalidInput("sortby: give a list of {\"field\": ..., \"direction\": \"asc\"|\"desc\"}")
    out = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("field"), str):
            raise InvalidInput("sortby: each entry needs a \"field\" (and may have a \"direction\")")
        _refuse_unknown(list(entry), ("field", "direction"), "sortby")
        direction = entry.get("direction", "asc")
        if direction not in ("asc", "desc"):
            raise InvalidInput(f"sortby: direction {direction!r} is neither 'asc' nor 'desc'")
        out.append((_sort_field(entry["field"]), direction == "desc"))
    return out


def _fields_text(value: str) -> Fields:
    """``id,+bbox,-properties.x``; no include at all keeps the whole item less the excludes."""
    include, exclude = [], []
    for part in (p.strip() for p in value.split(",")):
        if part:
            (exclude if part.startswith("-") else include).append(part.lstrip("+-"))
    return Fields(tuple(include) if include or not exclude else None, tuple(exclude))


def _fields_json(value: Any) -> Fields:
    """``{"include": [...], "exclude": [...]}``; ``include`` given as null or [] means the defaults."""
    if not isinstance(value, dict):
        raise InvalidInput("fields: give an object {\"include\": [...], \"exclude\": [...]}")
    _refuse_unknown(list(value), ("include", "exclude"), "fields")
    lists = []
    for key in ("include", "exclude"):
        v = value.get(key) or []
        if not isinstance(v, list) or not all(isinstance(p, str) for p in v):
            raise InvalidInput(f"fields: {key} must be a list of field names")
        lists.append(tuple(v))
    return Fields(lists[0] if "include" in value else None, lists[1])


def _names(value: Any, name: str) -> tuple[str, ...]:
    """A list of names; a comma-separated string is taken too (some clients send one)."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(f"{name}: give a list of names")
    return tuple(value)


def _filter(given: Mapping[str, Any]) -> cql2.Expr | None:
    """``filter`` with ``filter-lang`` (cql2-text for text, cql2-json for an object) and ``filter-crs``."""
    lang, crs = given.get("filter-lang"), given.get("filter-crs")
    if not isinstance(lang, str | None) or not isinstance(crs, str | None):
        raise InvalidInput("filter-lang, filter-crs: give strings")
    check_crs(crs)
    if "filter" not in given:
        if lang is not None:
            raise InvalidInput("filter-lang: given without a filter")
        return None
    return parse_filter(given["filter"], lang)


def from_query(query: QueryParams, allowed: Sequence[str] = SEARCH_PARAMS) -> SearchParams:
    """A GET search: comma-separated lists, ``intersects`` as GeoJSON text, ``sortby=-datetime,id``."""
    _refuse_unknown(list(query.keys()), allowed, "query")
    q = {k: ",".join(query.getlist(k)) for k in query}
    start, end = parse_datetime(q["datetime"]) if "datetime" in q else (None, None)
    intersects = None
    if "intersects" in q:
        try:
            intersects = _geometry(json.loads(q["intersects"]))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"intersects: not GeoJSON text ({exc})") from exc
    if "bbox" in q and intersects is not None:
        raise InvalidInput("bbox, intersects: give one of them, not both")
    return SearchParams(
        collections=tuple(c for c in q.get("collections", "").split(",") if c),
        ids=tuple(i for i in q.get("ids", "").split(",") if i),
        bbox=_bbox(q["bbox"].split(",")) if "bbox" in q else None, intersects=intersects, start=start, end=end,
        limit=parse_limit(q["limit"]) if "limit" in q else DEFAULT_LIMIT, token=q.get("token") or None,
        sortby=_sortby_text(q["sortby"]) if q.get("sortby") else (),
        fields=_fields_text(q["fields"]) if "fields" in q else None, filter=_filter(q),
    )


def from_body(body: Mapping[str, Any]) -> SearchParams:
    """A POST search body (JSON): lists as arrays, ``intersects`` as a GeoJSON object."""
    _refuse_unknown(list(body), SEARCH_PARAMS, "body")
    if "fields" in body and body["fields"] is None:
        raise InvalidInput("fields: null is not a fields object; give {} for the default fields")
    b = {k: v for k, v in body.items() if v is not None}
    if "bbox" in b and "intersects" in b:
        raise InvalidInput("bbox, intersects: give one of them, not both")
    if "datetime" in b and not isinstance(b["datetime"], str):
        raise InvalidInput("datetime: give a string (an instant or start/end)")
    if "token" in b and not isinstance(b["token"], str):
        raise InvalidInput("token: give the string from the 'next' link")
    if "bbox" in b and not isinstance(b["bbox"], list):
        raise InvalidInput("bbox: give 4 numbers: west,south,east,north (or 6, with elevations)")
    start, end = parse_datetime(b["datetime"]) if "datetime" in b else (None, None)
    return SearchParams(
        collections=_names(b["collections"], "collections") if "collections" in b else (),
        ids=_names(b["ids"], "ids") if "ids" in b else (),
        bbox=_bbox(b["bbox"]) if "bbox" in b else None,
        intersects=_geometry(b["intersects"]) if "intersects" in b else None, start=start, end=end,
        limit=parse_limit(b["limit"]) if "limit" in b else DEFAULT_LIMIT, token=b.get("token"),
        sortby=_sortby_json(b["sortby"]) if "sortby" in b else (),
        fields=_fields_json(b["fields"]) if "fields" in b else None, filter=_filter(b), raw=dict(body),
    )
