"""Zonal statistics with exact coverage fractions, and weights cached per area.

:func:`coverage_weights` asks exactextract once for the cells an area touches on
a grid and the fraction of each cell it covers. Monthly composites of an area
share one grid, so :func:`zonal_metrics` then needs only a gather and a few
weighted sums per month: no polygon is rasterised again. The numbers equal
exactextract's own ``sum``/``mean``/``median``/``count`` on the same raster
(the median uses exactextract's weighted-quantile definition).

Many areas on one grid go faster together: :func:`stack_weights` once, then
:func:`zonal_metrics_many` per month computes every area in one pass (one
gather, per-area sums, one in-place sort per area of packed value/index keys,
and the median's search vectorised over areas), bit for bit the same numbers
as :func:`zonal_metrics` (which is the one-area case of it).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from exactextract import exact_extract
from exactextract.raster import NumPyRasterSource
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from earthkeep.raster.grid import Grid


@dataclass(frozen=True)
class CoverageWeights:
    """Cells (flat row-major indices) an area covers on ``grid_digest`` and by how much (0-1)."""

    cells: np.ndarray
    coverage: np.ndarray
    cell_area_km2: np.ndarray
    grid_digest: str

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            cells=self.cells,
            coverage=self.coverage,
            cell_area_km2=self.cell_area_km2,
            grid=np.array(self.grid_digest),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> CoverageWeights:
        with np.load(io.BytesIO(data)) as z:
            return cls(z["cells"], z["coverage"], z["cell_area_km2"], str(z["grid"]))


def coverage_weights(geometries: Sequence[BaseGeometry], grid: Grid) -> list[CoverageWeights]:
    """Exact cell coverage of each geometry on ``grid`` (one exactextract pass for all)."""
    source = NumPyRasterSource(np.zeros(grid.shape, dtype=np.uint8), *grid.bounds, name="grid")
    feats = [{"type": "Feature", "properties": {"fid": i}, "geometry": mapping(g)} for i, g in enumerate(geometries)]
    rows = exact_extract(source, feats, ["cell_id", "coverage"], output="geojson")
    row_area = grid.row_areas_km2()
    out = []
    for row in rows:
        cells = np.asarray(row["properties"]["cell_id"], dtype=np.int64)
        cov = np.asarray(row["properties"]["coverage"], dtype=np.float64)
        keep = cov > 0
        cells, cov = cells[keep], cov[keep]
        out.append(CoverageWeights(cells, cov, row_area[cells // grid.width], grid.digest()))
    return out


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    """exactextract's weighted quantile (linear between order statistics; equal weights = type 7).

    As in exactextract, equal values are merged first (their weights summed).
    """
    if x.size == 0:
        return float("nan")
    xs, inverse = np.unique(x, return_inverse=True)
    ws = np.bincount(inverse.reshape(-1), weights=w)
    n = xs.size
    cum = np.cumsum(ws)
    s = np.empty(n)
    s[0] = 0.0
    s[1:] = np.arange(1, n) * ws[1:] + (n - 1) * cum[:-1]
    target = q * cum[-1] * (n - 1)
    right = int(np.searchsorted(s, target, side="right"))
    if right == 0:
        return float(xs[0])
    if right == n:
        return float(xs[-1])
    left = right - 1
    return float(xs[left] + (target - s[left]) * (xs[right] - xs[left]) / (s[right] - s[left]))


@dataclass(frozen=True, eq=False)
class StackedWeights:
    """Coverage weights of many areas on one grid, end to end: area ``i`` owns ``offsets[i]:offsets[i + 1]``."""

    cells: np.ndarray
    coverage: np.ndarray
    covered_km2: np.ndarray  # c·a of each cell (coverage times the cell's area)
    offsets: np.ndarray
    area_km2: np.ndarray  # Σ c·a of each area (does not depend on the month)
    grid_digest: str

    def __len__(self) -> int:
        return int(self.offsets.size - 1)


def stack_weights(weights: Sequence[CoverageWeights]) -> StackedWeights:
    """Concatenate the weights of areas on one grid, for :func:`zonal_metrics_many` (do it once, reuse monthly)."""
    digests = {w.grid_digest for w in weights}
    if len(digests) > 1:
        raise ValueError(f"coverage weights of different grids cannot be stacked: {sorted(digests)}")
    offsets = np.zeros(len(weights) + 1, dtype=np.int64)
    np.cumsum([w.cells.size for w in weights], out=offsets[1:])

    def cat(name: str, dtype: Any) -> np.ndarray:
        return np.concatenate([getattr(w, name) for w in weights]) if weights else np.empty(0, dtype)

    covered = np.concatenate([w.coverage * w.cell_area_km2 for w in weights]) if weights else np.empty(0, np.float64)
    area = _segment_sums(covered[None, :], offsets)[0]
    return StackedWeights(
        cat("cells", np.int64), cat("coverage", np.float64), covered, offsets, area, digests.pop() if digests else ""
    )


def zonal_metrics(
    values: np.ndarray, weights: CoverageWeights, *, threshold: float, nights: np.ndarray | None = None
) -> dict[str, Any]:
    """Electrification metrics of one area on one composite (``values`` on the weights' grid).

    ``sum_radiance`` is the sum of lights Σ c·v, ``lit_*`` count cells with
    v > ``threshold``, areas use the true cell area at each latitude.
    """
    return zonal_metrics_many(values, [weights], threshold=threshold, nights=nights)[0]


def zonal_metrics_many(
    values: np.ndarray,
    weights: Sequence[CoverageWeights] | StackedWeights,
    *,
    threshold: float,
    nights: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """:func:`zonal_metrics` of many areas on one composite at once (vectorised over blocks of areas).

    The numbers are bit for bit those of one area at a time: every sum runs
    over the same elements in the same order (``np.sum`` per segment, since
    ``np.add.reduceat`` sums in another order), and the median repeats
    :func:`weighted_quantile` step by step, vectorised over areas.
    """
    st = weights if isinstance(weights, StackedWeights) else stack_weights(weights)
    off = st.offsets
    flat = values.reshape(-1)
    flat_nights = None if nights is None else nights.reshape(-1)
    # Areas go in blocks of about _BLOCK_CELLS cells, which bounds the working memory of a large batch.
    cols = np.full((8, len(st)), np.nan)
    a0 = 0
    while a0 < len(st):
        a1 = max(a0 + 1, int(np.searchsorted(off, off[a0] + _BLOCK_CELLS, side="right")) - 1)
        s, e = int(off[a0]), int(off[a1])
        cols[:, a0:a1] = _block_metrics(
            flat, st.cells[s:e], st.coverage[s:e], st.covered_km2[s:e], off[a0 : a1 + 1] - s, threshold, flat_nights
        )
        a0 = a1
    valid_area, weight, total, lit_area, lit_pixels, median, ksum, knsum = cols.tolist()
    out = []
    for i, (ar, px) in enumerate(zip(st.area_km2.tolist(), np.diff(off).tolist(), strict=True)):
        w, tot, la, va = weight[i], total[i], lit_area[i], valid_area[i]
        out.append(
            {
                "sum_radiance": tot if w else None,
                "mean_radiance": tot / w if w else None,
                "median_radiance": median[i] if w else None,
                "lit_pixels": lit_pixels[i],
                "lit_area_km2": la,
                "lit_fraction": la / va if va else None,
                "valid_area_km2": va,
                "area_km2": ar,
                "valid_fraction": va / ar if ar else 0.0,
                "pixels": px,
                "mean_valid_nights": knsum[i] / ksum[i] if nights is not None and ksum[i] > 0 else None,
            }
        )
    return out


_BLOCK_CELLS = 1 << 18


def _block_metrics(
    flat: np.ndarray,
    cells: np.ndarray,
    coverage: np.ndarray,
    covered: np.ndarray,
    off: np.ndarray,
    threshold: float,
    flat_nights: np.ndarray | None,
) -> np.ndarray:
    """Per-area sums of a block of areas (rows: valid area, weight, Σ c·v, lit area, lit pixels, median,
    Σ c over known nights, Σ c·nights)."""
    out = np.full((8, off.size - 1), np.nan)
    raw = flat[cells]
    valid = np.isfinite(raw)
    voff = _compressed_offsets(valid, off)
    rows = np.empty((3, int(voff[-1])))  # c·a, c, c·v over the valid cells
    np.compress(valid, covered, out=rows[0])
    np.compress(valid, coverage, out=rows[1])
    raw = raw[valid]
    vv = raw.astype(np.float64)
    np.multiply(rows[1], vv, out=rows[2])
    out[0:3] = _segment_sums(rows, voff)
    lit = vv > threshold
    loff = _compressed_offsets(lit, voff)
    lit_rows = np.empty((2, int(loff[-1])))  # C-contiguous rows: a row sum is then pairwise
    np.compress(lit, rows[0], out=lit_rows[0])
    np.compress(lit, rows[1], out=lit_rows[1])
    out[3:5] = _segment_sums(lit_rows, loff)
    out[5] = _weighted_medians(vv, raw, rows[1], voff, 0.5)
    if flat_nights is not None:
        n = flat_nights[cells].astype(np.float64)
        known = np.isfinite(n)
        krows = np.empty((2, int(np.count_nonzero(known))))
        np.compress(known, coverage, out=krows[0])
        np.multiply(krows[0], n[known], out=krows[1])
        out[6:8] = _segment_sums(krows, _compressed_offsets(known, off))
    return out


def _compressed_offsets(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Segment offsets after keeping only ``mask`` (segments given by ``offsets``)."""
    counts = np.zeros(offsets.size - 1, dtype=np.int64)
    nonempty = offsets[1:] > offsets[:-1]
    if nonempty.any():  # (integer sums: reduceat's order does not matter; it misreads empty segments)
        counts[nonempty] = np.add.reduceat(mask.view(np.uint8), offsets[:-1][nonempty], dtype=np.int64)
    out = np.zeros(offsets.size, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _segment_sums(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``np.sum`` of each row over each segment (pairwise like a 1-D ``np.sum``, unlike ``reduceat``).

    ``rows`` must be C-contiguous, or the row sums may run in another order.
    """
    assert rows.flags.c_contiguous
    out = np.empty((rows.shape[0], offsets.size - 1))
    for i, (s, e) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)):
        out[:, i] = rows[:, s:e].sum(axis=1)
    return out


def _segment_sort(v: np.ndarray, raw: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Sort ``v`` (float64 values of ``raw``) within each segment: sorted values, their indices, stable or not."""
    bounds = list(zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True))
    if raw.dtype == np.float32 and v.size < 2**32:
        # One uint64 per cell, sorted in place per segment: the float32 bits made order-preserving
        # (high half), then the cell's index (low half), which also makes the sort stable.
        bits = raw.view(np.uint32)
        flip = (bits >> np.uint32(31)) * np.uint32(0x7FFFFFFF) | np.uint32(0x80000000)
        key = (bits ^ flip).astype(np.uint64) << np.uint64(32)
        key |= np.arange(v.size, dtype=np.uint64)
        for s, e in bounds:
            key[s:e].sort()
        order = np.bitwise_and(key, np.uint64(0xFFFFFFFF), out=key).view(np.int64)
        return v[order], order, True
    if raw.dtype != np.float32:
        raw32 = v.astype(np.float32)
        if np.array_equal(raw32, v):  # e.g. integers or float32 data held as float64: same order, same ties
            return _segment_sort(v, raw32, offsets)
    order = np.empty(v.size, dtype=np.int64)
    for s, e in bounds:
        order[s:e] = np.argsort(v[s:e]) + s
    return v[order], order, False


def _weighted_medians(v: np.ndarray, raw: np.ndarray, w: np.ndarray, offsets: np.ndarray, q: float) -> np.ndarray:
    """:func:`weighted_quantile` of each segment (NaN for an empty one), with identical arithmetic."""
    areas = offsets.size - 1
    if v.size == 0:
        return np.full(areas, np.nan)
    xs_sorted, order, stable = _segment_sort(v, raw, offsets)
    new = np.empty(v.size, dtype=bool)  # first of a run of equal values within a segment
    new[0] = True
    np.not_equal(xs_sorted[1:], xs_sorted[:-1], out=new[1:])
    new[offsets[:-1][offsets[:-1] < v.size]] = True
    run = np.cumsum(new) - 1
    runs = int(run[-1]) + 1
    # Equal values' weights summed in cell order, as np.unique + np.bincount does.
    if stable:
        ws = np.bincount(run, weights=w[order], minlength=runs)
    else:
        inverse = np.empty(v.size, dtype=np.int64)
        inverse[order] = run
        ws = np.bincount(inverse, weights=w, minlength=runs)
    xs = xs_sorted[new]
    roff = _compressed_offsets(new, offsets)
    n = np.diff(roff)
    base = roff[:-1]
    cum = np.empty(runs)
    for s, e in zip(base.tolist(), roff[1:].tolist(), strict=True):
        np.add.accumulate(ws[s:e], out=cum[s:e])  # sequential per area, as np.cumsum of one area
    has = n > 0
    last = np.where(has, roff[1:] - 1, 0)
    target = q * cum[last] * (n - 1)

    def s_at(i: np.ndarray) -> np.ndarray:
        """s[i] = i·ws[i] + (n - 1)·cum[i - 1] and s[0] = 0, at index ``i`` of each area (0 <= i < n)."""
        g = np.minimum(base + i, runs - 1)
        return np.where(i > 0, i * ws[g] + (n - 1) * cum[np.maximum(g - 1, 0)], 0.0)

    # np.searchsorted(s, target, side="right") of each area, by numpy's own bisection
    lo = np.zeros(areas, dtype=np.int64)
    hi = n.copy()
    while True:
        active = lo < hi
        if not active.any():
            break
        mid = lo + ((hi - lo) >> 1)
        le = s_at(mid) <= target
        lo = np.where(active & le, mid + 1, lo)
        hi = np.where(active & ~le, mid, hi)
    right = np.minimum(base + lo, runs - 1)
    left = np.maximum(base + lo - 1, 0)
    s_left, s_right = s_at(np.maximum(lo - 1, 0)), s_at(lo)
    with np.errstate(all="ignore"):
        interp = xs[left] + (target - s_left) * (xs[right] - xs[left]) / (s_right - s_left)
    first = xs[np.minimum(base, runs - 1)]
    med = np.where(lo == 0, first, np.where(lo == n, xs[last], interp))
    return np.where(has, med, np.nan)


class WeightCache:
    """A bounded in-memory LRU of :class:`CoverageWeights` (thread-safe)."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, CoverageWeights] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> CoverageWeights | None:
        with self._lock:
            w = self._items.get(key)
            if w is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return w

    def put(self, key: Hashable, weights: CoverageWeights) -> None:
        with self._lock:
            self._items[key] = weights
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def drop(self, predicate: Any) -> None:
        """Forget every entry whose key satisfies ``predicate``."""
        with self._lock:
            for k in [k for k in self._items if predicate(k)]:
                del self._items[k]
