"""The fused zonal-statistics kernel of :mod:`earthkeep.raster.zonal`, compiled with numba.

One pass per area gathers its cells' values (and nights), keeps the valid ones in
scratch buffers and sums them; then the area's values are sorted (an LSD radix
sort of float32 bits packed with the cell's position, or of float64 bits with the
position moved along where float32 cannot hold the values) and the weighted
median is searched. :func:`zonal_columns_parallel` deals the areas into lanes of
about equal cells, one a thread, each lane with its own scratch buffers. Every
operation repeats the numpy path's arithmetic in the same order: the sums
are numpy's pairwise summation (:func:`_sum`), ties are merged in cell
order, and the median's cumulative sums and search are those of
:func:`earthkeep.raster.zonal.weighted_quantile`, so the two kernels give the
same numbers (the tests check it; only the sign of a zero median may differ).

Compiled functions are cached on disk (``cache=True``): next to this file in
``__pycache__``, or, where that is read-only, numba's user-wide cache
(``~/.cache/numba``), or ``NUMBA_CACHE_DIR`` when set. Importing this module
compiles (or loads) the helpers, which have one signature each; the entry point
:func:`zonal_columns` is compiled (or loaded) at the first call of each dtype of
values and nights. :mod:`earthkeep.raster.zonal` imports this module on first use.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}
_jit = numba.njit(**_OPTIONS)  # the entry points: compiled for each dtype of values and nights
_jit_parallel = numba.njit(parallel=True, **_OPTIONS)


def _jit_as(signature: str) -> Any:
    """Helpers are compiled for their one signature (else numba compiles another copy for every
    call site that passes a constant: 0, True)."""
    return numba.njit(signature, **_OPTIONS)


_SIGN32 = np.uint32(0x80000000)
_SIGN64 = np.uint64(0x8000000000000000)
_MINUS_ZERO = np.uint32(0x7FFFFFFF)  # the key of -0.0, just below +0.0's (_SIGN32)
_LOW = np.uint64(0xFFFFFFFF)
_SMALL = 64  # areas with fewer valid cells are sorted by insertion


@_jit_as("f8(f8[::1], i8, i8)")
def _block_sum(a: np.ndarray, s: int, n: int) -> float:
    """numpy's ``pairwise_sum`` of at most 128 elements ``a[s:s + n]``: eight running sums. (Unsigned
    indices spare numba's check for negative ones, which kept LLVM from vectorising the sums.)"""
    if n < 8:
        res = 0.0
        for i in range(s, s + n):
            res += a[i]
        return res
    b = a[s : s + n]
    r0, r1, r2, r3 = b[0], b[1], b[2], b[3]
    r4, r5, r6, r7 = b[4], b[5], b[6], b[7]
    m = np.uint64(n - n % 8)
    i = np.uint64(8)
    while i < m:
        r0 += b[i]
        r1 += b[i + np.uint64(1)]
        r2 += b[i + np.uint64(2)]
        r3 += b[i + np.uint64(3)]
        r4 += b[i + np.uint64(4)]
        r5 += b[i + np.uint64(5)]
        r6 += b[i + np.uint64(6)]
        r7 += b[i + np.uint64(7)]
        i += np.uint64(8)
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for j in range(np.int64(m), n):
        res += b[j]
    return res


@_jit_as("f8(f8[::1], i8, i8[:, ::1], f8[::1])")
def _sum(a: np.ndarray, n: int, stack: np.ndarray, partial: np.ndarray) -> float:
    """``np.sum(a[:n])`` bit for bit: numpy's pairwise summation (blocks of at most 128 summed by
    :func:`_block_sum`, longer runs halved at a multiple of 8, left part plus right part), added to
    the identity 0.0. Written with an explicit stack (``stack``: rows of start, length, stage;
    ``partial``: sums waiting for their right part), since numba cannot cache recursive functions."""
    if n <= 128:
        return 0.0 + _block_sum(a, 0, n)
    top, done = 0, 0
    stack[0, 0], stack[0, 1], stack[0, 2] = 0, n, 0
    while top >= 0:
        start, length, stage = stack[top, 0], stack[top, 1], stack[top, 2]
        if length <= 128:
            partial[done] = _block_sum(a, start, length)
            done += 1
            top -= 1
        elif stage == 2:
            partial[done - 2] = partial[done - 2] + partial[done - 1]
            done -= 1
            top -= 1
        else:
            half = length // 2
            half -= half % 8
            stack[top, 2] = stage + 1
            top += 1
            if stage == 0:
                stack[top, 0], stack[top, 1] = start, half
            else:
                stack[top, 0], stack[top, 1] = start + half, length - half
            stack[top, 2] = 0
    return 0.0 + partial[0]


@_jit_as("u8(u4)")
def _float32_key(bits: np.uint32) -> np.uint64:
    """float32 bits as an unsigned integer in the floats' order (-0 just before +0)."""
    if bits & _SIGN32:
        return np.uint64(bits ^ np.uint32(0xFFFFFFFF))
    return np.uint64(bits | _SIGN32)


@_jit_as("u8(u8)")
def _float64_key(bits: np.uint64) -> np.uint64:
    """float64 bits as an unsigned integer in the floats' order (-0 just before +0)."""
    if bits & _SIGN64:
        return bits ^ np.uint64(0xFFFFFFFFFFFFFFFF)
    return bits | _SIGN64


@_jit_as("void(u8[::1], i8[::1], i8, b1)")
def _insertion_sort(keys: np.ndarray, idx: np.ndarray, n: int, with_idx: bool) -> None:
    """Stable sort of ``keys[:n]`` (only strictly greater keys move), ``idx[:n]`` moved along when
    ``with_idx``: faster than passes of the radix sort for a few keys."""
    for i in range(1, n):
        k, x = keys[i], idx[i] if with_idx else 0
        j = i - 1
        while j >= 0 and keys[j] > k:
            keys[j + 1] = keys[j]
            if with_idx:
                idx[j + 1] = idx[j]
            j -= 1
        keys[j + 1] = k
        if with_idx:
            idx[j + 1] = x


@_jit_as("void(u8[::1], i8, i8, u8[:, ::1])")
def _histograms(keys: np.ndarray, n: int, first: int, counts: np.ndarray) -> None:
    """Counts of each value of each byte ``first`` to 7 of ``keys[:n]`` (the four high bytes unrolled:
    the float32 case)."""
    one, byte = np.uint64(1), np.uint64(0xFF)
    if first == 4:
        for i in range(n):
            k = keys[i] >> np.uint64(32)
            counts[4, k & byte] += one
            counts[5, (k >> np.uint64(8)) & byte] += one
            counts[6, (k >> np.uint64(16)) & byte] += one
            counts[7, k >> np.uint64(24)] += one
        return
    for i in range(n):
        k = keys[i]
        for b in range(first, 8):
            counts[b, (k >> np.uint64(8 * b)) & byte] += one


@_jit_as("Tuple((u8[::1], i8[::1]))(u8[::1], u8[::1], i8[::1], i8[::1], i8, i8, b1)")
def _radix_sort(
    keys: np.ndarray, kbuf: np.ndarray, idx: np.ndarray, ibuf: np.ndarray, n: int, first: int, with_idx: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Stable sort of ``keys[:n]`` by their bytes ``first`` to 7 (LSD radix, one byte a pass, a pass
    skipped where all keys share the byte), ``idx[:n]`` moved along when ``with_idx``. Returns the
    arrays (``keys``/``kbuf``, ``idx``/``ibuf``) that hold the result."""
    if n < _SMALL:
        _insertion_sort(keys, idx, n, with_idx)
        return keys, idx
    counts = np.zeros((8, 256), dtype=np.uint64)  # (unsigned: no checks for negative indices)
    one = np.uint64(1)
    _histograms(keys, n, first, counts)
    src, dst, isrc, idst = keys, kbuf, idx, ibuf
    pos = np.empty(256, dtype=np.uint64)
    for b in range(first, 8):
        shift = np.uint64(8 * b)
        if counts[b, (src[0] >> shift) & np.uint64(0xFF)] == np.uint64(n):
            continue  # every key has this byte: the pass would move nothing
        total = np.uint64(0)
        for d in range(256):
            pos[d] = total
            total += counts[b, d]
        for i in range(n):
            k = src[i]
            d = (k >> shift) & np.uint64(0xFF)
            at = pos[d]
            dst[at] = k
            if with_idx:
                idst[at] = isrc[i]
            pos[d] = at + one
        src, dst, isrc, idst = dst, src, idst, isrc
    return src, isrc


@_jit_as("i8(f4[::1], f8[::1], i8, u8[::1], u8[::1], i8[::1], f8[::1], f8[::1])")
def _float32_runs(
    vals32: np.ndarray,
    w: np.ndarray,
    k: int,
    keys: np.ndarray,
    kbuf: np.ndarray,
    obuf: np.ndarray,
    rx: np.ndarray,
    rw: np.ndarray,
) -> int:
    """The distinct values of ``vals32[:k]`` in order into ``rx`` (-0 equals +0 and comes first), their
    weights ``w`` summed in cell order into ``rw`` (as ``np.unique`` and ``np.bincount``); returns how
    many. One uint64 a value sorts: its float32 key (high half), then its position."""
    bits32 = vals32.view(np.uint32)
    for j in range(k):
        keys[j] = (_float32_key(bits32[j]) << np.uint64(32)) | np.uint64(j)
    ordered, _ = _radix_sort(keys, kbuf, obuf, obuf, k, 4, False)
    one = np.empty(1, dtype=np.float32)  # to read a float32 from its bits
    one_bits = one.view(np.uint32)
    m = -1
    prev = np.uint32(0)
    for t in range(k):
        key = np.uint32(ordered[t] >> np.uint64(32))
        wt = w[np.int64(ordered[t] & _LOW)]
        if m >= 0 and (key == prev or (prev == _MINUS_ZERO and key == _SIGN32)):
            rw[m] += wt
            continue
        m += 1
        one_bits[0] = key ^ _SIGN32 if key & _SIGN32 else ~key
        rx[m], rw[m] = np.float64(one[0]), wt
        prev = key
    return m + 1


@_jit_as("i8[::1](f8[::1], i8, u8[::1], u8[::1], i8[::1], i8[::1])")
def _float64_order(
    vals: np.ndarray, k: int, keys: np.ndarray, kbuf: np.ndarray, order: np.ndarray, obuf: np.ndarray
) -> np.ndarray:
    """Positions of ``vals[:k]`` in value order, equal values in position order; the result is ``order``
    or ``obuf``."""
    bits64 = vals.view(np.uint64)  # the float64 key, the position moved along
    for j in range(k):
        keys[j] = _float64_key(bits64[j])
        order[j] = j
    _, out = _radix_sort(keys, kbuf, order, obuf, k, 0, True)
    return out


@_jit_as("i8(f8[::1], f8[::1], i8[::1], i8, f8[::1], f8[::1])")
def _merge_ties(vals: np.ndarray, w: np.ndarray, order: np.ndarray, k: int, rx: np.ndarray, rw: np.ndarray) -> int:
    """The distinct values of ``vals[:k]`` in ``order`` (-0 equals +0) into ``rx``, their weights summed
    in ``order`` into ``rw`` (as ``np.unique`` and ``np.bincount`` do); returns how many."""
    m = 0
    prev = vals[order[0]]
    rx[0], rw[0] = prev, w[order[0]]
    for t in range(1, k):
        x = vals[order[t]]
        if x == prev:
            rw[m] += w[order[t]]
        else:
            m += 1
            rx[m], rw[m] = x, w[order[t]]
            prev = x
    return m + 1


@_jit_as("f8(f8[::1], f8[::1], i8, f8[::1], f8)")
def _quantile_search(rx: np.ndarray, rw: np.ndarray, m: int, cum: np.ndarray, q: float) -> float:
    """:func:`~earthkeep.raster.zonal.weighted_quantile` from its distinct sorted values ``rx[:m]`` and
    their weights ``rw[:m]``: np.cumsum, np.searchsorted's bisection and the interpolation, same order."""
    acc = 0.0
    for i in range(m):
        acc += rw[i]
        cum[i] = acc
    nm1 = float(m - 1)
    target = q * cum[m - 1] * nm1
    lo, hi = 0, m  # np.searchsorted(s, target, side="right"), s[i] = i·rw[i] + (m - 1)·cum[i - 1]
    while lo < hi:
        mid = lo + ((hi - lo) >> 1)
        s_mid = float(mid) * rw[mid] + nm1 * cum[mid - 1] if mid > 0 else 0.0
        if s_mid <= target:
            lo = mid + 1
        else:
            hi = mid
    if lo == 0:
        return rx[0]
    if lo == m:
        return rx[m - 1]
    left = lo - 1
    s_left = float(left) * rw[left] + nm1 * cum[left - 1] if left > 0 else 0.0
    s_right = float(lo) * rw[lo] + nm1 * cum[lo - 1]
    return rx[left] + (target - s_left) * (rx[lo] - rx[left]) / (s_right - s_left)


@_jit
def zonal_columns(
    flat: np.ndarray,
    cells: np.ndarray,
    coverage: np.ndarray,
    covered: np.ndarray,
    offsets: np.ndarray,
    threshold: float,
    nights: np.ndarray,
    has_nights: bool,
) -> np.ndarray:
    """Per-area columns of ``zonal._block_metrics`` for all areas (rows: valid area, weight, Σ c·v,
    lit area, lit pixels, median, Σ c over known nights, Σ c·nights; NaN where not computed), one
    area after the other in this thread."""
    out = np.full((8, offsets.size - 1), np.nan)
    order = np.arange(offsets.size - 1)
    _areas(flat, cells, coverage, covered, offsets, threshold, nights, has_nights, order, out)
    return out


@_jit_parallel
def zonal_columns_parallel(
    flat: np.ndarray,
    cells: np.ndarray,
    coverage: np.ndarray,
    covered: np.ndarray,
    offsets: np.ndarray,
    threshold: float,
    nights: np.ndarray,
    has_nights: bool,
    threads: int,
) -> np.ndarray:
    """:func:`zonal_columns` with the areas shared out among ``threads`` threads (:func:`_lanes`); each
    area is computed as in :func:`zonal_columns`, so the numbers are the same."""
    out = np.full((8, offsets.size - 1), np.nan)
    lanes, lane_offsets = _lanes(offsets.copy(), threads)  # (a writable copy: the stored weights are read-only)
    for t in numba.prange(threads):
        order = lanes[lane_offsets[t] : lane_offsets[t + 1]]
        _areas(flat, cells, coverage, covered, offsets, threshold, nights, has_nights, order, out)
    return out


@_jit_as("Tuple((i8[::1], i8[::1]))(i8[::1], i8)")
def _lanes(offsets: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """The areas dealt into ``threads`` lanes of about equal cells (largest first, each to the lane with
    the fewest cells so far): the areas of lane ``t`` are ``lanes[lane_offsets[t]:lane_offsets[t + 1]]``."""
    areas = offsets.size - 1
    sizes = offsets[1:] - offsets[:-1]
    lane_of = np.empty(areas, dtype=np.int64)
    load = np.zeros(threads, dtype=np.int64)
    count = np.zeros(threads + 1, dtype=np.int64)
    for i in np.argsort(-sizes):
        t = np.argmin(load)
        lane_of[i] = t
        load[t] += sizes[i]
        count[t + 1] += 1
    lane_offsets = np.cumsum(count)
    lanes = np.empty(areas, dtype=np.int64)
    fill = lane_offsets[:-1].copy()
    for i in range(areas):
        lanes[fill[lane_of[i]]] = i
        fill[lane_of[i]] += 1
    return lanes, lane_offsets


def threads() -> int:
    """How many threads :func:`zonal_columns_parallel` may use (``NUMBA_NUM_THREADS``, or
    ``numba.set_num_threads``)."""
    return int(numba.get_num_threads())


@_jit
def _areas(
    flat: np.ndarray,
    cells: np.ndarray,
    coverage: np.ndarray,
    covered: np.ndarray,
    offsets: np.ndarray,
    threshold: float,
    nights: np.ndarray,
    has_nights: bool,
    order: np.ndarray,
    out: np.ndarray,
) -> None:
    """The columns of the areas ``order`` into ``out`` (scratch buffers of this call's own)."""
    longest = 1
    for i in order:
        longest = max(longest, offsets[i + 1] - offsets[i])
    sums = np.empty((7, longest))  # c·a, c, c·v (valid); c·a, c (lit); c, c·n (known nights)
    vals, vals32 = np.empty(longest), np.empty(longest, dtype=np.float32)
    keys, kbuf = np.empty(longest, dtype=np.uint64), np.empty(longest, dtype=np.uint64)
    obuf1, obuf2 = np.empty(longest, dtype=np.int64), np.empty(longest, dtype=np.int64)
    rx, rw, cum = np.empty(longest), np.empty(longest), np.empty(longest)
    stack, partial = np.empty((64, 3), dtype=np.int64), np.empty(64)  # for _sum (depth < 64)
    for i in order:
        s, e = offsets[i], offsets[i + 1]
        k, nl, nk, as_float32 = _gather(
            flat, cells, coverage, covered, s, e, threshold, nights, has_nights, sums, vals, vals32
        )
        for r in range(5):
            out[r, i] = _sum(sums[r], k if r < 3 else nl, stack, partial)
        if has_nights:
            out[6, i] = _sum(sums[5], nk, stack, partial)
            out[7, i] = _sum(sums[6], nk, stack, partial)
        if k:  # the weighted median (rows[1]: the valid cells' coverage)
            if as_float32:
                m = _float32_runs(vals32, sums[1], k, keys, kbuf, obuf1, rx, rw)
            else:
                m = _merge_ties(vals, sums[1], _float64_order(vals, k, keys, kbuf, obuf1, obuf2), k, rx, rw)
            out[5, i] = _quantile_search(rx, rw, m, cum, 0.5)


@_jit
def _gather(
    flat: np.ndarray,
    cells: np.ndarray,
    coverage: np.ndarray,
    covered: np.ndarray,
    s: int,
    e: int,
    threshold: float,
    nights: np.ndarray,
    has_nights: bool,
    sums: np.ndarray,
    vals: np.ndarray,
    vals32: np.ndarray,
) -> tuple[int, int, int, bool]:
    """Cells ``s:e`` into the rows of ``sums`` (each row packed: the valid, lit or known-nights cells
    in cell order) and the valid values into ``vals``/``vals32``; returns the three counts and whether
    float32 holds every valid value. Branch-free: every cell is written, and the count moves on only
    for a kept cell (a random mix of lit and dark cells would defeat branch prediction)."""
    k = nl = nk = 0
    as_float32 = True
    for j in range(s, e):
        cell = cells[j]
        v = np.float64(flat[cell])
        c, ca = coverage[j], covered[j]
        if has_nights:
            n = np.float64(nights[cell])
            sums[5, nk], sums[6, nk] = c, c * n
            nk += np.int64(np.isfinite(n))
        ok = np.isfinite(v)
        sums[0, k], sums[1, k], sums[2, k] = ca, c, c * v
        sums[3, nl], sums[4, nl] = ca, c
        vals[k] = v
        v32 = np.float32(v)
        vals32[k] = v32
        as_float32 &= (np.float64(v32) == v) | (not ok)
        nl += np.int64(ok & (v > threshold))
        k += np.int64(ok)
    return k, nl, nk, as_float32
