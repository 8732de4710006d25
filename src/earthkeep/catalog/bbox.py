"""Bounding boxes: ``west,south,east,north`` in degrees, checked once where they enter.

Kept apart from :mod:`earthkeep.catalog.items` (shapely, SQLAlchemy) so that
settings can check a box without importing the catalog.
"""

from __future__ import annotations

from collections.abc import Sequence

from earthkeep.errors import InvalidInput

BBox = tuple[float, float, float, float]


def check_bbox(bbox: Sequence[float]) -> BBox:
    """Validate a ``west,south,east,north`` box in degrees."""
    if len(bbox) != 4:
        raise InvalidInput("bbox needs 4 numbers: west,south,east,north")
    w, s, e, n = (float(v) for v in bbox)
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise InvalidInput("bbox must be west,south,east,north in degrees with south <= north")
    return (w, s, e, n)
