"""The one place request parameters get their types and bounds.

Every router takes its ids, bounding boxes, months and counts from here, so a bad
value is a ``422`` naming the parameter (``loc``), decided by the schema layer
before any handler, database or library sees it — never a ``500``:

* ids are positive and fit a signed 64-bit column (SQLite and PostgreSQL ``BIGINT``);
* a bounding box is four finite numbers ``west,south,east,north`` with longitudes
  in [-180, 180], latitudes in [-90, 90] and ``south <= north`` (``west > east``
  crosses the antimeridian and is allowed);
* tile coordinates are bounded by their zoom level's range (checked in the
  handler, which knows ``z``); months are ``YYYY-MM``.

The bounds also appear in the OpenAPI document, so clients and schemathesis see them.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, Field

MAX_ID = 2**63 - 1
MAX_ZOOM = 24
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"

BBox = tuple[float, float, float, float]


def parse_bbox(value: str | None) -> BBox | None:
    """``"w,s,e,n"`` -> four checked floats, or ``None``; a ``ValueError`` says what is wrong."""
    if value is None or value == "":
        return None
    if len(value) > 200:
        raise ValueError("bbox must be four numbers: west,south,east,north")
    parts = value.split(",")
    if len(parts) != 4:
        raise ValueError("bbox must be four numbers: west,south,east,north")
    try:
        box = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError("bbox must be four numbers: west,south,east,north") from None
    return check_bbox(box)  # type: ignore[arg-type]


def check_bbox(box: BBox) -> BBox:
    """Four finite numbers in range, south <= north."""
    if len(box) != 4 or not all(isinstance(v, int | float) and math.isfinite(v) for v in box):
        raise ValueError("bbox must be four finite numbers")
    w, s, e, n = box
    if not (-180 <= w <= 180 and -180 <= e <= 180):
        raise ValueError("bbox longitudes must be within [-180, 180]")
    if not (-90 <= s <= 90 and -90 <= n <= 90):
        raise ValueError("bbox latitudes must be within [-90, 90]")
    if s > n:
        raise ValueError("bbox south must not be north of north")
    return (float(w), float(s), float(e), float(n))


BBoxQuery = Annotated[
    str | None,
    AfterValidator(parse_bbox),
    Query(description="west,south,east,north in degrees (west > east crosses the antimeridian)",
          examples=["-10,40,10,60"]),
]
"""A query ``bbox``: the handler receives a checked ``(w, s, e, n)`` tuple or ``None``."""

# path and query ids
IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="a positive 64-bit id")]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID, description="a positive 64-bit id")]
AfterQuery = Annotated[int, Query(ge=0, le=MAX_ID, description="page after this id (0: from the start)")]
# ids inside JSON bodies
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
OptionalId = Annotated[int | None, Field(None, ge=1, le=MAX_ID)]

MonthPath = Annotated[str, Path(pattern=MONTH_PATTERN, description="YYYY-MM")]
MonthQuery = Annotated[str | None, Query(pattern=MONTH_PATTERN, description="YYYY-MM")]
ZoomPath = Annotated[int, Path(ge=0, le=MAX_ZOOM)]
TilePath = Annotated[int, Path(ge=0, le=2**MAX_ZOOM - 1)]


def limit_query(default: int = 100, maximum: int = 1000) -> object:
    """``limit`` with the route's default and maximum."""
    return Query(default, ge=1, le=maximum)
