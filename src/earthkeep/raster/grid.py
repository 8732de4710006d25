"""Regular longitude/latitude grids aligned on a global lattice (the Black Marble 15" grid).

Every grid here has square cells of ``res`` degrees whose edges fall on
``-180 + k*res`` and ``90 - k*res``, so two grids of the same resolution line
up cell for cell and an overlap is a pair of integer windows.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from affine import Affine

BLACK_MARBLE_RES = 10.0 / 2400
"""15 arc-seconds: 2400 cells across a 10 degree Black Marble tile."""
EARTH_RADIUS_KM = 6371.0072
"""Authalic radius of the WGS84 ellipsoid (a sphere of the same area)."""
_EPS = 1e-9


@dataclass(frozen=True)
class Grid:
    """``height`` x ``width`` cells of ``res`` degrees from the north-west corner (``west``, ``north``)."""

    west: float
    north: float
    res: float
    width: int
    height: int

    @property
    def east(self) -> float:
        return self.west + self.width * self.res

    @property
    def south(self) -> float:
        return self.north - self.height * self.res

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.west, self.south, self.east, self.north)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def transform(self) -> Affine:
        return Affine(self.res, 0.0, self.west, 0.0, -self.res, self.north)

    def digest(self) -> str:
        """A short stable identity of the grid (for caches)."""
        text = f"{self.west:.9f},{self.north:.9f},{self.res:.12f},{self.width},{self.height}"
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def row_areas_km2(self) -> np.ndarray:
        """Area of one cell in each row, on the authalic sphere (km²)."""
        edges = np.radians(self.north - np.arange(self.height + 1) * self.res)
        band = np.abs(np.sin(edges[:-1]) - np.sin(edges[1:]))
        return EARTH_RADIUS_KM**2 * math.radians(self.res) * band

    def window(self, other: Grid) -> tuple[slice, slice, slice, slice] | None:
        """Where ``other`` overlaps this grid: (rows, cols) in self, then (rows, cols) in other."""
        if not math.isclose(self.res, other.res, rel_tol=1e-9):
            raise ValueError(f"grids of different resolution ({self.res} vs {other.res})")
        dc = round((other.west - self.west) / self.res)
        dr = round((self.north - other.north) / self.res)
        r0, r1 = max(0, dr), min(self.height, dr + other.height)
        c0, c1 = max(0, dc), min(self.width, dc + other.width)
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1), slice(r0 - dr, r1 - dr), slice(c0 - dc, c1 - dc)


def snap(bounds: tuple[float, float, float, float], res: float = BLACK_MARBLE_RES) -> Grid:
    """The smallest lattice-aligned grid of ``res`` covering ``bounds`` (west, south, east, north)."""
    w, s, e, n = bounds
    c0 = math.floor((w + 180.0) / res + _EPS)
    c1 = math.ceil((e + 180.0) / res - _EPS)
    r0 = math.floor((90.0 - n) / res + _EPS)
    r1 = math.ceil((90.0 - s) / res - _EPS)
    c1, r1 = max(c1, c0 + 1), max(r1, r0 + 1)
    return Grid(west=-180.0 + c0 * res, north=90.0 - r0 * res, res=res, width=c1 - c0, height=r1 - r0)
