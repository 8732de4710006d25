"""Zonal statistics with exact coverage fractions, and weights cached per area.

:func:`coverage_weights` asks exactextract once for the cells an area touches on
a grid and the fraction of each cell it covers. Monthly composites of an area
share one grid, so :func:`zonal_metrics` then needs only a gather and a few
weighted sums per month: no polygon is rasterised again. The numbers equal
exactextract's own ``sum``/``mean``/``median``/``count`` on the same raster
(the median uses exactextract's weighted-quantile definition).
:meth:`CoverageWeights.to_bytes` is the form kept in the store (raw arrays
behind a short header: reading it back costs a copy, not a decompression);
:meth:`StackedWeights.to_bytes` keeps many areas' weights, already stacked, as
one object (with a checksum of its words, checked on reading).

Many areas on one grid go faster together: :func:`stack_weights` once, then
:func:`zonal_metrics_many` per month computes every area in one pass (one
gather, per-area sums, one in-place sort per area of packed value/index keys,
and the median's search vectorised over areas), bit for bit the same numbers
as :func:`zonal_metrics` (which is the one-area case of it).

Two kernels compute it. The default is :mod:`earthkeep.raster._zonal_numba`, a
numba kernel that does the gather, the sums and the sort of one area in one
compiled loop (several times faster); the numpy path below is the fallback, used
when numba cannot be imported or does not take the dtype (float16, bool), or when
``EARTHKEEP_ZONAL_KERNEL=numpy`` is set (``numba`` insists on the compiled kernel,
``auto`` is the default). Both give the same numbers bit for bit: the kernel
repeats numpy's pairwise summation and this module's median arithmetic. numba
keeps the compiled code on disk (``__pycache__``, else ``~/.cache/numba``, or
``NUMBA_CACHE_DIR``): the first call after an install compiles for some seconds,
later processes load it (import and load: about a second). With
``EARTHKEEP_ZONAL_THREADS=N`` (default 1), a batch of several areas with at least
``_PARALLEL_CELLS`` cells is shared among N of numba's threads (at most
``NUMBA_NUM_THREADS``), each area computed as on one thread, so the numbers do not
depend on it. It is off by default: where the other cores are busy with other
work the threads wait for each other, so the time spreads widely (better or worse
than one thread's) and more CPU is spent (docs/benchmarks.md).

The exact median needs the full sort: exactextract adds the weights of the
distinct values one by one in value order, so the rounding of every partial
sum (and of the total that sets the target) depends on the order of all cells,
not only of those near the median; a selection (``np.partition``) would give
other last bits.
"""

from __future__ import annotations

import functools
import importlib
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from exactextract import exact_extract
from exactextract.raster import NumPyRasterSource
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from earthkeep.raster.grid import Grid

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CoverageWeights:
    """Cells (flat row-major indices) an area covers on ``grid_digest`` and by how much (0-1)."""

    cells: np.ndarray
    coverage: np.ndarray
    cell_area_km2: np.ndarray
    grid_digest: str

    def to_bytes(self) -> bytes:
        """``_MAGIC``, cell count and grid digest (8-byte aligned), then cells (int64), coverage and cell
        areas (float64), little-endian."""
        digest = self.grid_digest.encode()
        head = _MAGIC + struct.pack("<QQ", self.cells.size, len(digest)) + digest
        head += bytes(-len(head) % 8)
        return b"".join(
            [
                head,
                np.ascontiguousarray(self.cells, "<i8").tobytes(),
                np.ascontiguousarray(self.coverage, "<f8").tobytes(),
                np.ascontiguousarray(self.cell_area_km2, "<f8").tobytes(),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CoverageWeights:
        """Read :meth:`to_bytes` (the arrays are read-only views of ``data``); ``ValueError`` if ``data`` is
        not that or not whole."""
        if data[: len(_MAGIC)] != _MAGIC or len(data) < len(_MAGIC) + 16:
            raise ValueError("not stored coverage weights (unknown header)")
        n, size = struct.unpack_from("<QQ", data, len(_MAGIC))
        start = len(_MAGIC) + 16 + size + (-(len(_MAGIC) + 16 + size) % 8)
        if len(data) != start + 24 * n:
            raise ValueError(f"stored coverage weights are cut or padded: {len(data)} bytes for {n} cells")
        digest = data[len(_MAGIC) + 16 : len(_MAGIC) + 16 + size].decode()
        return cls(
            np.frombuffer(data, "<i8", n, start),
            np.frombuffer(data, "<f8", n, start + 8 * n),
            np.frombuffer(data, "<f8", n, start + 16 * n),
            digest,
        )


_MAGIC = b"EKCW\x01\x00\x00\x00"  # earthkeep coverage weights, format 1


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

    def to_bytes(self) -> bytes:
        """``_STACK_MAGIC``; area count, cell count, grid digest length; a checksum of the arrays (their
        64-bit words summed and xor-ed); the digest (8-byte aligned); then offsets (int64), areas (float64),
        cells (int64), coverage and covered area (float64), little-endian: read back with one copy and a
        pass over the words (:meth:`from_bytes`), no stacking."""
        digest = self.grid_digest.encode()
        body = b"".join(
            np.ascontiguousarray(a, dtype).tobytes() for a, dtype in zip(self._arrays(), _STACK_DTYPES, strict=True)
        )
        head = _STACK_MAGIC + struct.pack("<QQQ", len(self), self.cells.size, len(digest))
        head += _checksum(body) + digest
        return head + bytes(-len(head) % 8) + body

    @classmethod
    def from_bytes(cls, data: bytes) -> StackedWeights:
        """Read :meth:`to_bytes` (the arrays are read-only views of ``data``); ``ValueError`` if ``data`` is
        not that, not whole, or not what was written (checksum, offsets)."""
        fixed = len(_STACK_MAGIC) + 24 + 16
        if data[: len(_STACK_MAGIC)] != _STACK_MAGIC or len(data) < fixed:
            raise ValueError("not stored stacked coverage weights (unknown header)")
        areas, n, size = struct.unpack_from("<QQQ", data, len(_STACK_MAGIC))
        start = fixed + size + (-(fixed + size) % 8)
        if len(data) != start + 8 * (2 * areas + 1) + 24 * n:
            raise ValueError(f"stored stacked coverage weights are cut or padded: {len(data)} bytes for {n} cells")
        body = memoryview(data)[start:]
        if _checksum(body) != data[fixed - 16 : fixed]:
            raise ValueError("stored stacked coverage weights do not match their checksum")
        arrays, at = [], start
        for count, dtype in zip((areas + 1, areas, n, n, n), _STACK_DTYPES, strict=True):
            arrays.append(np.frombuffer(data, dtype, count, at))
            at += 8 * count
        offsets, area, cells, coverage, covered = arrays
        if offsets[0] != 0 or offsets[-1] != n or (np.diff(offsets) < 0).any():
            raise ValueError("stored stacked coverage weights have offsets out of order")
        return cls(cells, coverage, covered, offsets, area, data[fixed : fixed + size].decode())

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return self.offsets, self.area_km2, self.cells, self.coverage, self.covered_km2


_STACK_MAGIC = b"EKSW\x01\x00\x00\x00"  # earthkeep stacked coverage weights, format 1
_STACK_DTYPES = ("<i8", "<f8", "<i8", "<f8", "<f8")


def _checksum(body: bytes | memoryview) -> bytes:
    """The 64-bit words of ``body`` summed (modulo 2**64) and xor-ed: finds a cut, a flipped bit or a
    garbled block at memory speed (a cryptographic hash of megabytes would cost more than the month's
    statistics)."""
    words = np.frombuffer(body, "<u8")
    return struct.pack("<QQ", int(words.sum(dtype=np.uint64)), int(np.bitwise_xor.reduce(words)))


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
    area = _segment_sums((covered[None, :], offsets))[0]
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
    kernel: str | None = None,
) -> list[dict[str, Any]]:
    """:func:`zonal_metrics` of many areas on one composite at once.

    The numbers are bit for bit those of one area at a time: every sum runs
    over the same elements in the same order (``np.sum`` per segment, since
    ``np.add.reduceat`` sums in another order), and the median repeats
    :func:`weighted_quantile` step by step. ``kernel`` is ``"numba"`` (the
    compiled fused kernel), ``"numpy"`` (vectorised over blocks of areas) or
    ``"auto"``; ``None`` reads ``EARTHKEEP_ZONAL_KERNEL`` (default ``auto``:
    numba when it can be imported and handles the dtypes, else numpy).
    """
    st = weights if isinstance(weights, StackedWeights) else stack_weights(weights)
    off = st.offsets
    flat = values.reshape(-1)
    flat_nights = None if nights is None else nights.reshape(-1)
    compiled = _compiled_kernel(kernel, flat, flat_nights)
    if compiled is not None:
        cols = _compiled_columns(compiled, flat, st, float(threshold), flat_nights)
    else:
        cols = _numpy_columns(flat, st, threshold, flat_nights)
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
KERNELS = ("auto", "numba", "numpy")


def _numpy_columns(
    flat: np.ndarray, st: StackedWeights, threshold: float, flat_nights: np.ndarray | None
) -> np.ndarray:
    """The rows of :func:`_block_metrics` for all areas, in blocks of about ``_BLOCK_CELLS`` cells (which
    bounds the working memory of a large batch)."""
    off = st.offsets
    cols = np.full((8, len(st)), np.nan)
    a0 = 0
    while a0 < len(st):
        a1 = max(a0 + 1, int(np.searchsorted(off, off[a0] + _BLOCK_CELLS, side="right")) - 1)
        s, e = int(off[a0]), int(off[a1])
        cols[:, a0:a1] = _block_metrics(
            flat, st.cells[s:e], st.coverage[s:e], st.covered_km2[s:e], off[a0 : a1 + 1] - s, threshold, flat_nights
        )
        a0 = a1
    return cols


_PARALLEL_CELLS = 1 << 15  # fewer cells than this: one thread (starting the others costs more than it saves)
_parallel_lock = threading.Lock()


def _compiled_columns(
    compiled: Any, flat: np.ndarray, st: StackedWeights, threshold: float, flat_nights: np.ndarray | None
) -> np.ndarray:
    """The numba kernel's columns: the areas shared among ``EARTHKEEP_ZONAL_THREADS`` threads when that is
    above 1 and there are several areas and enough cells, else in this thread. One parallel call at a
    time: numba's fallback threading layer (workqueue) aborts the process if two threads launch parallel
    work at once, so a call that finds it busy runs on its own thread."""
    nights = np.empty(0, np.float32) if flat_nights is None else flat_nights
    args = (flat, st.cells, st.coverage, st.covered_km2, st.offsets, threshold, nights, flat_nights is not None)
    threads = min(_threads(), compiled.threads(), len(st))
    if threads > 1 and st.cells.size >= _PARALLEL_CELLS and _parallel_lock.acquire(blocking=False):
        try:
            return compiled.zonal_columns_parallel(*args, threads)
        finally:
            _parallel_lock.release()
    return compiled.zonal_columns(*args)


def _threads() -> int:
    """``EARTHKEEP_ZONAL_THREADS``: how many threads a batch of areas may use (default 1, the calling thread;
    at most numba's ``NUMBA_NUM_THREADS``)."""
    raw = os.environ.get("EARTHKEEP_ZONAL_THREADS", "1").strip()
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"EARTHKEEP_ZONAL_THREADS={raw!r}: use a whole number of threads, 1 or more")
    return int(raw)


def _compiled_kernel(kernel: str | None, flat: np.ndarray, flat_nights: np.ndarray | None) -> Any:
    """The numba kernel module, or ``None`` for the numpy path (asked for, numba missing, or a dtype
    numba does not handle: float16, bool, non-native byte order)."""
    name = (os.environ.get("EARTHKEEP_ZONAL_KERNEL", "auto") if kernel is None else kernel).strip().lower()
    if name not in KERNELS:
        raise ValueError(f"unknown zonal kernel {name!r} (EARTHKEEP_ZONAL_KERNEL): use one of {', '.join(KERNELS)}")
    if name == "numpy":
        return None
    module = _load_numba_kernel()
    if module is None and name == "numba":
        raise RuntimeError("the numba zonal kernel was asked for but numba cannot be loaded (see the log)")
    arrays = [flat] if flat_nights is None else [flat, flat_nights]
    return module if all(_compiles(a.dtype) for a in arrays) else None


def _compiles(dtype: np.dtype) -> bool:
    """The kernel takes native integers, float32 and float64."""
    return dtype.isnative and (dtype.kind in "iu" or dtype in (np.float32, np.float64))


_warm_lock = threading.Lock()
_warmed: bool | None = None


def warm_up() -> bool:
    """Make the compiled kernel ready for the composites' dtype (float32 values and nights) before the first
    metrics are due: numba compiles it the first time after an install (7-8 s of CPU here) and loads it from
    its disk cache afterwards (about 0.6 s). ``True`` if the compiled kernel is ready, ``False`` where the
    numpy path will be used (``EARTHKEEP_ZONAL_KERNEL=numpy``, numba missing, or the warm-up failed: logged,
    never raised). Thread-safe: the first call does the work, concurrent calls wait for it, later calls return
    at once. ``make install`` runs it, so that no job pays for the compile; ``bench/nightlights.py`` runs it before
    timing (``bench/zonal.py`` times the first call apart)."""
    global _warmed
    with _warm_lock:
        if _warmed is None:
            _warmed = _warm_up()
        return _warmed


def _warm_up() -> bool:
    try:
        values = np.array([1.0, np.nan, 3.0, 0.5], np.float32)
        nights = np.array([2.0, 0.0, 5.0, 1.0], np.float32)
        compiled = _compiled_kernel(None, values, nights)
        if compiled is None:
            return False
        for writeable in (True, False):  # weights stacked here, and read back from the store (read-only views)
            arrays = [np.arange(4, dtype=np.int64), np.ones(4), np.ones(4), np.array([0, 2, 4], np.int64)]
            for a in arrays:
                a.flags.writeable = writeable
            cells, coverage, covered, offsets = arrays
            st = StackedWeights(cells=cells, coverage=coverage, covered_km2=covered, offsets=offsets,
                                area_km2=np.array([2.0, 2.0]), grid_digest="warm-up")
            _compiled_columns(compiled, values, st, 0.5, nights)
            threads = min(_threads(), compiled.threads())
            if threads > 1:  # EARTHKEEP_ZONAL_THREADS: batches of areas take the parallel kernel
                compiled.zonal_columns_parallel(values, cells, coverage, covered, offsets, 0.5, nights, True, threads)
        return True
    except Exception as exc:  # a failed warm-up costs only the time it would have saved
        log.warning("zonal.warm_up_failed", error=f"{type(exc).__name__}: {exc}")
        return False


@functools.cache
def _load_numba_kernel() -> Any:
    """:mod:`earthkeep.raster._zonal_numba`, imported on first use (numba takes a moment to import), or
    ``None`` if numba is missing or has nowhere to keep its cache (then set ``NUMBA_CACHE_DIR``)."""
    try:
        return importlib.import_module("earthkeep.raster._zonal_numba")
    except (ImportError, RuntimeError) as exc:
        log.warning("zonal.numba_unavailable", error=str(exc), fallback="numpy")
        return None


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
    raw = flat.take(cells)
    valid = np.isfinite(raw)
    keep = None if raw.dtype.kind != "f" or valid.all() else np.flatnonzero(valid)
    rows = np.empty((3, raw.size if keep is None else keep.size))  # c·a, c, c·v over the valid cells
    if keep is None:
        voff = off
        rows[0], rows[1] = covered, coverage
    else:
        voff = _compressed_offsets(valid, off)
        raw = raw.take(keep)
        covered.take(keep, out=rows[0])
        coverage.take(keep, out=rows[1])
    vv = raw.astype(np.float64)
    np.multiply(rows[1], vv, out=rows[2])
    lit = vv > threshold
    lit_rows = np.compress(lit, rows[:2], axis=1)  # C-contiguous rows: a row sum is then pairwise
    groups = [(rows, voff), (lit_rows, _compressed_offsets(lit, voff))]
    if flat_nights is not None:  # Σ c and Σ c·n over the cells with a known count of nights n
        n = flat_nights.take(cells)
        known = np.isfinite(n)
        kept = np.flatnonzero(known)
        krows = np.empty((2, kept.size))
        coverage.take(kept, out=krows[0])
        np.multiply(krows[0], n.take(kept), out=krows[1])  # (n as float64, exactly)
        groups.append((krows, _compressed_offsets(known, off)))
    sums = _segment_sums(*groups)
    out[0:5] = sums[:5]
    if flat_nights is not None:
        out[6:8] = sums[5:]
    out[5] = _weighted_medians(vv, raw, rows[1], voff, 0.5)
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


def _segment_sums(*groups: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``np.sum`` of each row of each ``(rows, offsets)`` group over each of its segments, the groups' rows
    stacked (pairwise like a 1-D ``np.sum``, unlike ``np.add.reduceat``).

    ``rows`` must be C-contiguous, or the row sums may run in another order.
    """
    assert all(rows.flags.c_contiguous for rows, _ in groups)
    out = np.empty((sum(rows.shape[0] for rows, _ in groups), groups[0][1].size - 1))
    reduce = np.add.reduce
    r = 0
    for rows, offsets in groups:
        k = r + rows.shape[0]
        for i, (s, e) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)):
            out[r:k, i] = reduce(rows[:, s:e], axis=1)
        r = k
    return out


_HIGH = np.uint64(32)
_LOW = np.uint64(0xFFFFFFFF)
_SIGN = np.uint32(0x80000000)
_MINUS_ZERO_KEY = np.uint32(0x7FFFFFFF)  # the key of -0.0, just below +0.0's (0x80000000)


def _float_keys(raw: np.ndarray) -> np.ndarray:
    """float32 bits as uint32 that sort in the floats' order (-0 just before +0)."""
    bits = raw.view(np.uint32)
    return bits ^ ((bits >> np.uint32(31)) * np.uint32(0x7FFFFFFF) | _SIGN)


def _keys_to_float64(keys: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_float_keys`, as float64."""
    bits = keys ^ ((~keys >> np.uint32(31)) * np.uint32(0x7FFFFFFF) | _SIGN)
    return bits.view(np.float32).astype(np.float64)


def _equal_to_previous(keys: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sorted keys equal as floats to the previous one of their segment (-0 equals +0)."""
    eq = np.empty(keys.size, dtype=bool)
    eq[0] = False
    np.equal(keys[1:], keys[:-1], out=eq[1:])
    zeros = np.flatnonzero(keys[1:] == _SIGN) + 1  # +0.0 right after -0.0
    eq[zeros[keys[zeros - 1] == _MINUS_ZERO_KEY]] = True
    eq[offsets[:-1][offsets[:-1] < keys.size]] = False
    return eq


def _weighted_medians(v: np.ndarray, raw: np.ndarray, w: np.ndarray, offsets: np.ndarray, q: float) -> np.ndarray:
    """:func:`weighted_quantile` of each segment (NaN for an empty one), with identical arithmetic."""
    if v.size == 0:
        return np.full(offsets.size - 1, np.nan)
    if raw.dtype != np.float32 and raw.size < 2**32:
        raw32 = v.astype(np.float32)
        if np.array_equal(raw32, v):  # e.g. integers or float32 data held as float64: same order, same ties
            raw = raw32
    if raw.dtype == np.float32 and raw.size < 2**32:
        keys, w_sorted = _sort_float32(raw, w, offsets)
        eq = _equal_to_previous(keys, offsets)
        if eq.any():  # equal values are one value whose weight is summed in cell order (np.unique + np.bincount)
            new = ~eq
            keys, ws, roff = keys[new], _run_weights(w_sorted, eq), _compressed_offsets(new, offsets)
        else:
            ws, roff = w_sorted, offsets
        return _quantile_search(lambda i: _keys_to_float64(keys[i]), ws, roff, q)
    order = np.empty(v.size, dtype=np.int64)
    for s, e in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        order[s:e] = np.argsort(v[s:e]) + s
    xs = v[order]
    new = np.empty(v.size, dtype=bool)
    new[0] = True
    np.not_equal(xs[1:], xs[:-1], out=new[1:])
    new[offsets[:-1][offsets[:-1] < v.size]] = True
    inverse = np.empty(v.size, dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    xs = xs[new]
    return _quantile_search(xs.__getitem__, np.bincount(inverse, weights=w), _compressed_offsets(new, offsets), q)


def _run_weights(w_sorted: np.ndarray, eq: np.ndarray) -> np.ndarray:
    """Weight of each run of equal values (``eq``: equal to the previous one), summed in order from 0.0
    as ``np.bincount`` does."""
    new = ~eq
    ties = np.flatnonzero(eq)
    if ties.size * 16 > eq.size:
        return np.bincount(np.cumsum(new) - 1, weights=w_sorted)
    # few ties: add up only the elements of runs longer than one
    ws = w_sorted[new]
    tied = np.unique(np.concatenate([ties - 1, ties]))
    run = tied - np.searchsorted(ties, tied, side="right")
    sums = np.bincount(run - run[0], weights=w_sorted.take(tied))
    first = run[new.take(tied)]
    ws[first] = sums[first - run[0]]
    return ws


def _sort_float32(raw: np.ndarray, w: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order-preserving keys of ``raw`` sorted within each segment, and ``w`` in that order (stable)."""
    # One uint64 per cell, sorted in place per segment: the float32 bits made order-preserving
    # (high half), then the cell's index (low half), which also makes the sort stable.
    key = _float_keys(raw).astype(np.uint64) << _HIGH
    key |= np.arange(raw.size, dtype=np.uint64)
    for s, e in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        key[s:e].sort()
    keys = (key >> _HIGH).astype(np.uint32)
    return keys, w.take(np.bitwise_and(key, _LOW, out=key).view(np.int64))


def _quantile_search(value_at: Any, ws: np.ndarray, roff: np.ndarray, q: float) -> np.ndarray:
    """:func:`weighted_quantile`'s search in each segment of distinct sorted values (``value_at(i)`` gives
    them as float64) with their weights ``ws``, vectorised over the segments."""
    cum = np.empty(ws.size)
    for s, e in zip(roff[:-1].tolist(), roff[1:].tolist(), strict=True):
        np.add.accumulate(ws[s:e], out=cum[s:e])  # sequential per area, as np.cumsum of one area
    areas = roff.size - 1
    runs = ws.size
    n = np.diff(roff)
    base = roff[:-1]
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
    x_left, x_right, x_first, x_last = value_at(np.stack([left, right, np.minimum(base, runs - 1), last]))
    with np.errstate(all="ignore"):
        interp = x_left + (target - s_left) * (x_right - x_left) / (s_right - s_left)
    med = np.where(lo == 0, x_first, np.where(lo == n, x_last, interp))
    return np.where(has, med, np.nan)


_Weights = CoverageWeights | StackedWeights


class WeightCache:
    """A bounded in-memory LRU of :class:`CoverageWeights` and :class:`StackedWeights` (thread-safe)."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, _Weights] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> _Weights | None:
        with self._lock:
            w = self._items.get(key)
            if w is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return w

    def put(self, key: Hashable, weights: _Weights) -> None:
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
