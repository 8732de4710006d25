"""STAC API filters: CQL2 text or JSON, parsed and evaluated with the ``cql2`` library.

A filter is evaluated on each item's STAC form (so it names ``id``, ``collection``, ``geometry``,
``datetime`` and the namespaced properties, e.g. ``earthkeep:kind``). Comparing with a property an
item lacks, or with a value of another type, is *unknown* in CQL2: such an item does not match.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import cql2

from earthkeep.errors import InvalidInput

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
LANGS = ("cql2-text", "cql2-json")
#: Operators a filter may use: basic CQL2 (comparisons, and/or/not, is null) and those ``cql2``
#: evaluates besides (like, between, in, spatial and temporal); any other function is refused.
OPERATORS = frozenset({
    "and", "or", "not", "=", "<>", "<", "<=", ">", ">=", "isNull", "like", "between", "in",
    "s_intersects", "s_equals", "s_disjoint", "s_touches", "s_within", "s_overlaps", "s_crosses", "s_contains",
    "t_after", "t_before", "t_contains", "t_disjoint", "t_during", "t_equals", "t_finishedBy", "t_finishes",
    "t_intersects", "t_meets", "t_metBy", "t_overlappedBy", "t_overlaps", "t_startedBy", "t_starts",
})


def parse_filter(value: Any, lang: str | None) -> cql2.Expr:
    """A filter as given (text, JSON object, or JSON text) -> a checked expression."""
    if lang is not None and lang not in LANGS:
        raise InvalidInput(f"filter-lang: {lang!r} is not one of {', '.join(LANGS)}")
    lang = lang or ("cql2-text" if isinstance(value, str) else "cql2-json")
    try:
        if lang == "cql2-text":
            if not isinstance(value, str):
                raise InvalidInput("filter: cql2-text is a string")
            expr = cql2.parse_text(value)
        else:
            expr = cql2.parse_json(value if isinstance(value, str) else json.dumps(value))
        expr.validate()
    except (cql2.ParseError, cql2.ValidationError, ValueError) as exc:
        raise InvalidInput(f"filter: not valid {lang}: {' '.join(str(exc).split())[:300]}") from exc
    _check_operators(expr.to_json())
    return expr


def _check_operators(node: Any) -> None:
    if isinstance(node, list):
        for n in node:
            _check_operators(n)
    elif isinstance(node, dict):
        op = node.get("op")
        if op is not None and op not in OPERATORS:
            raise InvalidInput(f"filter: unsupported operator or function {op!r}")
        for v in node.values():
            _check_operators(v)


def check_crs(value: str | None) -> None:
    if value is not None and value != CRS84:
        raise InvalidInput(f"filter-crs: only {CRS84} is supported")


def matcher(expr: cql2.Expr) -> Callable[[dict[str, Any]], bool]:
    """A test of one STAC item (dict) against ``expr``; an unknown result is no match."""

    def matches(item: dict[str, Any]) -> bool:
        try:
            return bool(expr.matches(item))
        except Exception:  # cql2 raises a bare Exception when the result is unknown
            return False

    return matches


def queryables(url: str) -> dict[str, Any]:
    """The JSON Schema of what a filter can name (more properties are allowed: domains add their own)."""
    dt = {"type": "string", "format": "date-time"}
    return {
        "$schema": "https://json-schema.org/draft/2019-09/schema", "$id": url, "type": "object",
        "title": "earthkeep queryables",
        "properties": {
            "id": {"title": "Item id", "type": "string"},
            "collection": {"title": "Collection", "type": "string"},
            "geometry": {"title": "Footprint", "$ref": "https://geojson.org/schema/Geometry.json"},
            "datetime": {"title": "Nominal time (start)", **dt},
            "start_datetime": {"title": "Start", **dt}, "end_datetime": {"title": "End", **dt},
            "earthkeep:kind": {"title": "Forcing kind", "type": "string", "enum": ["wind", "ocean_currents"]},
            "earthkeep:source": {"title": "Source", "type": "string"},
        },
        "additionalProperties": True,
    }
