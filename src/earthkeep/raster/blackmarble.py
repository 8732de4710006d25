"""NASA Black Marble VNP46A2 daily tiles (HDF5-EOS5): read, mask, composite.

A VNP46A2 file holds one 10° x 10° tile of one night on the 15" grid
(2400 x 2400 cells; the testbed writes smaller tiles of the same layout). The
datasets sit in ``HDFEOS/GRIDS/VNP_Grid_DNB/Data Fields`` (``VIIRS_Grid_DNB_2d``
is accepted too):

* ``DNB_BRDF-Corrected_NTL`` (uint16, ``scale_factor`` 0.1, ``_FillValue`` 65535,
  nW·cm⁻²·sr⁻¹) — or ``Gap_Filled_DNB_BRDF-Corrected_NTL``, same encoding;
* ``Mandatory_Quality_Flag`` (uint8): 0 high-quality persistent, 1 high-quality
  ephemeral, 2 poor quality, 255 no retrieval (fill);
* ``QF_Cloud_Mask`` (uint16 bit field, fill 65535): bits 6-7 are the cloud
  detection (0 confident clear, 1 probably clear, 2 probably cloudy, 3 confident cloudy).

Masking keeps a cell when its radiance is not the fill value, its quality flag
is one of the accepted ones (default 0 and 1) and, with ``mask_cloudy``, the
cloud mask is present and says clear or probably clear.

The **monthly composite** is, per cell, the median of the valid nights of the
month (the mean of the two middle values for an even count), together with the
number of valid nights; a cell without any valid night is NaN.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from earthkeep.errors import InvalidInput
from earthkeep.raster.grid import Grid

GRID_GROUPS = ("HDFEOS/GRIDS/VNP_Grid_DNB/Data Fields", "HDFEOS/GRIDS/VIIRS_Grid_DNB_2d/Data Fields")
RADIANCE = "DNB_BRDF-Corrected_NTL"
GAP_FILLED = "Gap_Filled_DNB_BRDF-Corrected_NTL"
QUALITY = "Mandatory_Quality_Flag"
CLOUD = "QF_Cloud_Mask"
RADIANCE_FILL = 65535
QUALITY_FILL = 255
CLOUD_FILL = 65535
DEFAULT_SCALE = 0.1
TILE_DEGREES = 10.0
_NAME = re.compile(r"\.A(?P<year>\d{4})(?P<doy>\d{3})\.h(?P<h>\d{2})v(?P<v>\d{2})\.")
_STRIP_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class Masking:
    """Which cells count as valid nights."""

    accepted_flags: tuple[int, ...] = (0, 1)
    mask_cloudy: bool = True
    variable: str = RADIANCE


def mask_radiance(raw: np.ndarray, quality: np.ndarray, cloud: np.ndarray | None, *, scale: float,
                  offset: float, fill: int, masking: Masking) -> np.ndarray:
    """Radiance in nW·cm⁻²·sr⁻¹ as float32, NaN where the night is not usable."""
    valid = (raw != fill) & np.isin(quality, masking.accepted_flags)
    if masking.mask_cloudy and cloud is not None:
        detection = (cloud >> 6) & 0b11
        valid &= (cloud != CLOUD_FILL) & (detection <= 1)
    out = raw.astype(np.float32) * np.float32(scale) + np.float32(offset)
    out[~valid] = np.nan
    return out


class Granule:
    """One open VNP46A2 file; :meth:`read` returns masked radiance for a window."""

    def __init__(self, path: Path, *, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or self.path.name
        try:
            self._file = h5py.File(self.path, "r")
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{self.name} is not a readable HDF5 file ({exc}); the download is corrupt") from exc
        try:
            self._fields = self._group()
            self.date = self._date()
            self.grid = self._grid()
        except BaseException:
            self._file.close()
            raise

    def close(self) -> None:
        self._file.close()

    def _group(self) -> h5py.Group:
        for g in GRID_GROUPS:
            if g in self._file:
                return self._file[g]
        raise InvalidInput(f"{self.name} is not a VNP46A2 file: none of {', '.join(GRID_GROUPS)} is present")

    def _dataset(self, name: str) -> h5py.Dataset:
        if name not in self._fields:
            raise InvalidInput(f"{self.name} has no dataset {name!r}; is it a VNP46A2 file?")
        ds = self._fields[name]
        if ds.ndim != 2 or ds.shape[0] != ds.shape[1] or ds.shape[0] == 0:
            raise InvalidInput(f"{self.name}: dataset {name} has shape {ds.shape}; expected a square 2-D grid")
        return ds

    def _date(self) -> date:
        m = _NAME.search(self.name)
        if m is None:
            raise InvalidInput(f"{self.name}: cannot tell the date and tile from the file name")
        return datetime.strptime(m["year"] + m["doy"], "%Y%j").date()

    def _grid(self) -> Grid:
        size = self._dataset(QUALITY).shape[0]
        west, north = _attr(self._file, "WestBoundingCoord"), _attr(self._file, "NorthBoundingCoord")
        if west is None or north is None:
            m = _NAME.search(self.name)
            assert m is not None
            west, north = -180.0 + TILE_DEGREES * int(m["h"]), 90.0 - TILE_DEGREES * int(m["v"])
        return Grid(west=float(west), north=float(north), res=TILE_DEGREES / size, width=size, height=size)

    def read(self, rows: slice, cols: slice, masking: Masking) -> np.ndarray:
        """Masked radiance of the window ``rows`` x ``cols`` of this tile."""
        rad = self._dataset(masking.variable)
        if rad.shape != (self.grid.height, self.grid.width):
            raise InvalidInput(f"{self.name}: {masking.variable} and {QUALITY} differ in shape")
        try:
            raw = rad[rows, cols]
            quality = self._dataset(QUALITY)[rows, cols]
            cloud = self._dataset(CLOUD)[rows, cols] if masking.mask_cloudy else None
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidInput(f"{self.name}: cannot read its data ({exc}); the file is corrupt") from exc
        fill = _attr(rad, "_FillValue")
        return mask_radiance(
            raw, quality, cloud, scale=_attr(rad, "scale_factor", DEFAULT_SCALE) or DEFAULT_SCALE,
            offset=_attr(rad, "add_offset", None) or _attr(rad, "offset", 0.0) or 0.0,
            fill=int(RADIANCE_FILL if fill is None else fill), masking=masking,
        )


def _attr(obj: Any, key: str, default: float | None = None) -> float | None:
    value = obj.attrs.get(key)
    if value is None:
        return default
    try:
        return float(np.ravel(value)[0])
    except (TypeError, ValueError, IndexError):
        return default


@contextlib.contextmanager
def open_granules(paths: Sequence[tuple[Path, str]]) -> Iterator[list[Granule]]:
    """Open every ``(path, name)``; all are closed on exit (or when one fails to open)."""
    opened: list[Granule] = []
    try:
        for path, name in paths:
            opened.append(Granule(path, name=name))
        yield opened
    finally:
        for g in opened:
            g.close()


def common_resolution(granules: Sequence[Granule]) -> float:
    """The cell size shared by all granules (they must agree)."""
    if not granules:
        raise InvalidInput("no VNP46A2 granules to composite")
    res = {round(g.grid.res, 12) for g in granules}
    if len(res) != 1:
        raise InvalidInput(f"VNP46A2 granules of different resolutions: {sorted(res)}")
    return granules[0].grid.res


def monthly_composite(granules: Sequence[Granule], target: Grid,
                      masking: Masking) -> tuple[np.ndarray, np.ndarray]:
    """Median of valid nights and count of valid nights on ``target`` (NaN / 0 where none)."""
    days = sorted({g.date for g in granules})
    by_day = {d: [g for g in granules if g.date == d] for d in days}
    median = np.full(target.shape, np.nan, dtype=np.float32)
    count = np.zeros(target.shape, dtype=np.float32)
    step = max(16, _STRIP_BYTES // max(1, len(days) * target.width * 4))
    for r0 in range(0, target.height, step):
        strip = Grid(target.west, target.north - r0 * target.res, target.res, target.width,
                     min(step, target.height - r0))
        stack = np.full((len(days), strip.height, strip.width), np.nan, dtype=np.float32)
        for i, d in enumerate(days):
            for g in by_day[d]:
                win = strip.window(g.grid)
                if win is not None:
                    rows, cols, grows, gcols = win
                    stack[i, rows, cols] = g.read(grows, gcols, masking)
        median[r0:r0 + strip.height], count[r0:r0 + strip.height] = nan_median(stack)
    return median, count


def nan_median(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median over axis 0 ignoring NaN, and the number of finite values (no warnings)."""
    n = np.isfinite(stack).sum(axis=0)
    ordered = np.sort(stack, axis=0)  # NaN sort last
    lo = np.clip((n - 1) // 2, 0, None)[None]
    hi = np.clip(n // 2, 0, None)[None]
    med = (np.take_along_axis(ordered, lo, 0)[0] + np.take_along_axis(ordered, hi, 0)[0]) / 2
    med[n == 0] = np.nan
    return med.astype(np.float32), n.astype(np.float32)
