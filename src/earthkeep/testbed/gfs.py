"""An emulated NOAA GFS tree: real GRIB2 files (eccodes) and their ``.idx`` inventories.

The layout is the one of NOMADS and the AWS open-data bucket::

    gfs.YYYYMMDD/HH/atmos/gfs.tHHz.pgrb2.0p25.fFFF
    gfs.YYYYMMDD/HH/atmos/gfs.tHHz.pgrb2.0p25.fFFF.idx

Each file holds 39 messages (38 at f000) in a GFS-like order (PRMSL first, isobaric levels,
surface, 2 m, then ``UGRD``/``VGRD`` at 10 m side by side, higher winds, ...) on
the real GFS grid (``0p25``: 1440 x 721, or ``1p00``: 360 x 181, for fast tests),
packed like GFS (``packing="complex"``: template 5.3, second-order spatial
differencing, 12 bits; ~29 MB a 0.25° file) or ``"ccsds"`` (4x faster to write)
or ``"simple"`` (~60 MB). Only the 10 m wind changes with the valid time; the other fields are
encoded once per grid and seed, and reused with a new date and step. The
``.idx`` is built by reading the written file back with eccodes
(:func:`earthkeep.raster.grib.inventory` prints it as ``wgrib2 -s`` does).
Files appear atomically, GRIB before ``.idx``, as NOAA publishes them.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import eccodes as ec
import numpy as np

from earthkeep.errors import InvalidInput, NotFound
from earthkeep.raster.grib import LatLonGrid, get_grid, inventory

PACKINGS = {
    "complex": "grid_complex_spatial_differencing",  # GFS: template 5.3, 2nd-order differencing
    "ccsds": "grid_ccsds",  # ~10x faster to write, similar size
    "simple": "grid_simple",  # template 5.0, largest
}
BITS_PER_VALUE = 12
WIND_10M_PATTERN = ":UGRD:10 m above ground:"

_SURFACE, _ISOBARIC, _MSL, _HEIGHT, _COLUMN = 1, 100, 101, 103, 200  # GRIB2 code table 4.5


@dataclass(frozen=True, slots=True)
class Field:
    """One message of the emulated file: GRIB identity and a plausible shape.

    Values are ``clip(mean + tropics * cos²(lat) + wave * cos(lat) * sin(k lon) + noise * N, low, high)``.
    """

    name: str
    param: tuple[int, int, int]
    level_type: int
    level: int
    mean: float
    tropics: float
    wave: float
    noise: float
    low: float
    high: float
    accumulated: bool = False  # a ``0-H hour acc fcst`` message, absent at f000

    @property
    def is_wind_10m(self) -> bool:
        return self.name in ("UGRD", "VGRD") and (self.level_type, self.level) == (_HEIGHT, 10)


def _upper(hpa: int, hgt: float, tmp: float) -> list[Field]:
    p = hpa * 100
    return [
        Field("HGT", (0, 3, 5), _ISOBARIC, p, hgt, hgt * 0.06, hgt * 0.02, 3, -500, 40_000),
        Field("TMP", (0, 0, 0), _ISOBARIC, p, tmp, 25, 4, 0.3, 180, 330),
        Field("RH", (0, 1, 1), _ISOBARIC, p, 55, 15, 25, 3, 0, 100),
        Field("UGRD", (0, 2, 2), _ISOBARIC, p, 8, -6, 10, 0.5, -90, 90),
        Field("VGRD", (0, 2, 3), _ISOBARIC, p, 0, 0, 9, 0.5, -90, 90),
    ]


def _winds(metres: int) -> list[Field]:
    return [
        Field("UGRD", (0, 2, 2), _HEIGHT, metres, 2, -5, 7, 0.4, -60, 60),
        Field("VGRD", (0, 2, 3), _HEIGHT, metres, 0, 0, 6, 0.4, -60, 60),
    ]


FIELDS: tuple[Field, ...] = (
    Field("PRMSL", (0, 3, 1), _MSL, 0, 100_800, 500, 1500, 40, 95_000, 105_000),
    Field("VIS", (0, 19, 0), _SURFACE, 0, 18_000, 4000, 3000, 200, 0, 24_100),
    Field("GUST", (0, 2, 22), _SURFACE, 0, 8, -2, 4, 0.5, 0, 40),
    *_upper(500, 5500, 250),
    *_upper(850, 1450, 270),
    *_upper(1000, 110, 280),
    Field("HGT", (0, 3, 5), _SURFACE, 0, 300, 0, 900, 25, -400, 6000),
    Field("TMP", (0, 0, 0), _SURFACE, 0, 255, 45, 6, 0.5, 200, 330),
    Field("PRES", (0, 3, 0), _SURFACE, 0, 97_500, 1000, 2500, 40, 50_000, 105_000),
    Field("CAPE", (0, 7, 6), _SURFACE, 0, 100, 900, 400, 30, 0, 6000),
    Field("TMP", (0, 0, 0), _HEIGHT, 2, 257, 40, 5, 0.4, 200, 330),
    Field("SPFH", (0, 1, 0), _HEIGHT, 2, 0.003, 0.014, 0.003, 0.0002, 0, 0.03),
    Field("DPT", (0, 0, 6), _HEIGHT, 2, 252, 40, 5, 0.4, 200, 310),
    Field("RH", (0, 1, 1), _HEIGHT, 2, 70, 10, 20, 3, 0, 100),
    *_winds(10),
    Field("APCP", (0, 1, 8), _SURFACE, 0, 0.5, 4, 3, 0.3, 0, 250, accumulated=True),
    *_winds(20),
    Field("TMP", (0, 0, 0), _HEIGHT, 80, 256, 40, 5, 0.4, 200, 330),
    *_winds(80),
    *_winds(100),
    Field("PWAT", (0, 1, 3), _COLUMN, 0, 8, 40, 8, 1, 0, 80),
    Field("LAND", (2, 0, 0), _SURFACE, 0, -0.3, 0, 1.5, 0, 0, 1),
    Field("ICEC", (10, 2, 0), _SURFACE, 0, 1.0, -8, 0.3, 0, 0, 1),
)


# --------------------------------------------------------------------------- paths


def cycle_dir(cycle: datetime) -> str:
    """``gfs.YYYYMMDD/HH/atmos`` for ``cycle``."""
    cycle = _cycle(cycle)
    return f"gfs.{cycle:%Y%m%d}/{cycle:%H}/atmos"


def relative_path(cycle: datetime, hour: int, grid: str = "0p25") -> str:
    """``gfs.YYYYMMDD/HH/atmos/gfs.tHHz.pgrb2.<grid>.fFFF``, as on NOMADS and AWS."""
    cycle = _cycle(cycle)
    if not 0 <= hour <= 384:
        raise InvalidInput(f"forecast hour {hour} is outside 0..384")
    return f"{cycle_dir(cycle)}/gfs.t{cycle:%H}z.pgrb2.{get_grid(grid).name}.f{hour:03d}"


def grib_path(root: Path, cycle: datetime, hour: int, grid: str = "0p25") -> Path:
    return Path(root) / relative_path(cycle, hour, grid)


def idx_path(root: Path, cycle: datetime, hour: int, grid: str = "0p25") -> Path:
    return Path(root) / (relative_path(cycle, hour, grid) + ".idx")


def _cycle(cycle: datetime) -> datetime:
    if cycle.tzinfo is not None:
        cycle = cycle.astimezone(UTC).replace(tzinfo=None)
    if cycle.hour % 6 or cycle.minute or cycle.second or cycle.microsecond:
        raise InvalidInput(f"GFS cycle {cycle:%Y-%m-%d %H:%M:%S} is not at 00, 06, 12 or 18 UTC")
    return cycle


# --------------------------------------------------------------------------- writing


def write_cycle(
    root: Path,
    cycle: datetime,
    hours: Iterable[int],
    *,
    grid: str = "0p25",
    extra_messages: bool = True,
    seed: int = 0,
    packing: str = "complex",
) -> list[Path]:
    """Write GRIB file and ``.idx`` for every hour of ``cycle``; return the GRIB paths."""
    return [
        add_hour(root, cycle, hour, grid=grid, extra_messages=extra_messages, seed=seed, packing=packing)
        for hour in hours
    ]


def add_hour(
    root: Path,
    cycle: datetime,
    hour: int,
    *,
    grid: str = "0p25",
    extra_messages: bool = True,
    seed: int = 0,
    packing: str = "complex",
    with_idx: bool = True,
) -> Path:
    """Publish one forecast hour: the GRIB file, then (unless ``with_idx`` is false) its ``.idx``."""
    path = grib_path(root, cycle, hour, grid)
    data = render(cycle, hour, grid=grid, extra_messages=extra_messages, seed=seed, packing=packing)
    _write_atomic(path, data)
    if with_idx:
        _write_atomic(path.with_name(path.name + ".idx"), inventory(path).encode())
    return path


def write_tree(
    root: Path,
    cycles: Iterable[datetime],
    hours: Iterable[int],
    *,
    complete: bool | Mapping[datetime, bool | Collection[int]] = True,
    grid: str = "0p25",
    extra_messages: bool = True,
    seed: int = 0,
    packing: str = "complex",
) -> dict[datetime, list[int]]:
    """Write several cycles; return, per cycle (as given), the hours published with their ``.idx``.

    ``complete`` says what is missing: ``True`` nothing; ``False`` the latest
    cycle is still being published; a mapping gives per cycle ``True``, ``False``
    or the hours missing entirely. A cycle being published has the first half of
    its hours, and the next hour's GRIB file without its ``.idx`` (an upload in
    flight); clients must not treat that hour as available.
    """
    chosen = sorted(cycles, key=_cycle)
    hours = sorted(hours)
    if isinstance(complete, bool):
        plan: dict[datetime, bool | Collection[int]] = {} if complete or not chosen else {_cycle(chosen[-1]): False}
    else:
        plan = {_cycle(c): v for c, v in complete.items()}
    unknown = set(plan) - {_cycle(c) for c in chosen}
    if unknown:
        raise InvalidInput(f"complete= names cycles that are not written: {sorted(unknown)}")
    options: dict[str, Any] = {"grid": grid, "extra_messages": extra_messages, "seed": seed, "packing": packing}
    published: dict[datetime, list[int]] = {}
    for cycle in chosen:
        ready, in_flight = _publication(hours, plan.get(_cycle(cycle), True))
        for hour in ready:
            add_hour(root, cycle, hour, **options)
        for hour in in_flight:
            add_hour(root, cycle, hour, with_idx=False, **options)
        published[cycle] = ready
    return published


def _publication(hours: list[int], state: bool | Collection[int]) -> tuple[list[int], list[int]]:
    """Hours published with their ``.idx``, and hours whose GRIB is there without it."""
    if state is True:
        return list(hours), []
    if state is False:
        half = len(hours) // 2
        return hours[:half], hours[half : half + 1]
    return [h for h in hours if h not in state], []


def render(
    cycle: datetime,
    hour: int,
    *,
    grid: str = "0p25",
    extra_messages: bool = True,
    seed: int = 0,
    packing: str = "complex",
) -> bytes:
    """The bytes of one emulated GFS file."""
    relative_path(cycle, hour, grid)  # validates all three
    cycle, spec = _cycle(cycle), get_grid(grid)
    packing_type = _packing(packing)
    static = _static_messages(spec, seed, packing_type) if extra_messages else {}
    valid_hours = (cycle - datetime(2000, 1, 1)).total_seconds() / 3600 + hour
    u10, v10 = wind_10m(spec, valid_hours, seed)
    chunks = []
    for field in FIELDS:
        if field.is_wind_10m:
            values = u10 if field.name == "UGRD" else v10
            chunks.append(_stamp(_encode(field, values, spec, packing_type), cycle, hour, field))
        elif field in static and not (field.accumulated and hour == 0):
            chunks.append(_stamp(static[field], cycle, hour, field))
    return b"".join(chunks)


def wind_10m(grid: LatLonGrid, valid_hours: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth, plausible 10 m wind (m/s) at ``valid_hours`` after 2000-01-01: trades,
    westerlies, eastward-drifting synoptic waves, a diurnal term and a little noise."""
    phi = np.radians(grid.lats())[:, None]
    lam = np.radians(grid.lons())[None, :]
    t = valid_hours
    drift = np.radians(10.0) / 24.0 * t  # systems move ~10° east a day
    diurnal = 2 * np.pi * t / 24.0
    u = (
        -6.0 * np.cos(4 * phi)
        + 5.0 * np.cos(phi) * np.sin(2 * phi) * np.sin(5 * (lam - drift))
        + 2.0 * np.cos(phi) ** 2 * np.sin(3 * lam + 0.7 - 0.5 * drift)
        + 1.5 * np.cos(phi) * np.sin(lam + diurnal)
    )
    v = (
        6.0 * np.cos(phi) * np.sin(2 * phi) * np.cos(5 * (lam - drift) + 0.4)
        + 2.0 * np.cos(phi) ** 2 * np.cos(2 * lam - drift)
        + 1.0 * np.cos(phi) * np.cos(lam + diurnal)
    )
    noise = _noise(grid, seed)
    shift = round(t * 3) % grid.ni
    u = u + 0.3 * np.roll(noise, shift, axis=1)
    v = v + 0.3 * np.roll(noise, -shift, axis=0)
    return u, v


@lru_cache(maxsize=4)
def _noise(grid: LatLonGrid, seed: int) -> np.ndarray:
    """Unit white noise on ``grid``, read-only."""
    noise = np.random.default_rng(seed).standard_normal((grid.nj, grid.ni)).astype(np.float32)
    noise.setflags(write=False)
    return noise


@lru_cache(maxsize=4)
def _smooth_noise(grid: LatLonGrid, seed: int) -> np.ndarray:
    """Unit noise correlated over ~1.5° (box filter in both directions), read-only."""
    width = max(2, round(1.5 / grid.step))
    noise = _box(_box(_noise(grid, seed), width, axis=1), width, axis=0)
    noise /= noise.std()
    noise.setflags(write=False)
    return noise


def _box(values: np.ndarray, width: int, axis: int) -> np.ndarray:
    total = np.cumsum(values, axis=axis, dtype=np.float64)
    return ((total - np.roll(total, width, axis=axis)) / width).astype(np.float32)


def _field_values(field: Field, grid: LatLonGrid, seed: int, index: int) -> np.ndarray:
    phi = np.radians(grid.lats())[:, None]
    lam = np.radians(grid.lons())[None, :]
    k = 2 + index % 5
    values = (
        field.mean
        + field.tropics * np.cos(phi) ** 2
        + field.wave * np.cos(phi) * np.sin(k * lam + index + 0.3 * k * np.sin(3 * phi))
    )
    if field.noise:
        values = values + 0.5 * field.noise * np.roll(_smooth_noise(grid, seed), 17 * index, axis=1)
    values = np.clip(values, field.low, field.high)
    return np.rint(values) if field.name == "LAND" else values


@lru_cache(maxsize=2)  # ~30 MB each on the 0.25° grid
def _static_messages(grid: LatLonGrid, seed: int, packing_type: str) -> dict[Field, bytes]:
    """Every field but the 10 m wind, encoded once; :func:`_stamp` dates them."""
    return {
        field: _encode(field, _field_values(field, grid, seed, index), grid, packing_type)
        for index, field in enumerate(FIELDS)
        if not field.is_wind_10m
    }


@lru_cache(maxsize=4)
def _grid_template(grid: LatLonGrid, packing_type: str) -> bytes:
    h = ec.codes_grib_new_from_samples("GRIB2")
    try:
        _set(h, centre=7, subCentre=0, generatingProcessIdentifier=96, tablesVersion=2)
        _set(h, typeOfGeneratingProcess=2, shapeOfTheEarth=6, Ni=grid.ni, Nj=grid.nj)
        _set(
            h,
            latitudeOfFirstGridPointInDegrees=90.0,
            longitudeOfFirstGridPointInDegrees=0.0,
            latitudeOfLastGridPointInDegrees=-90.0,
            longitudeOfLastGridPointInDegrees=grid.lon_last,
            iDirectionIncrementInDegrees=grid.step,
            jDirectionIncrementInDegrees=grid.step,
        )
        _set(h, packingType=packing_type, bitsPerValue=BITS_PER_VALUE)
        if packing_type == PACKINGS["complex"]:
            _set(h, orderOfSpatialDifferencing=2)  # as GFS
        ec.codes_set_values(h, np.zeros(grid.ni * grid.nj))
        return bytes(ec.codes_get_message(h))
    finally:
        ec.codes_release(h)


def _encode(field: Field, values: np.ndarray, grid: LatLonGrid, packing_type: str) -> bytes:
    h = ec.codes_new_from_message(_grid_template(grid, packing_type))
    try:
        discipline, category, number = field.param
        _set(h, discipline=discipline, parameterCategory=category, parameterNumber=number)
        _set(h, typeOfFirstFixedSurface=field.level_type)
        if field.level_type in (_ISOBARIC, _HEIGHT):
            _set(h, scaleFactorOfFirstFixedSurface=0, scaledValueOfFirstFixedSurface=field.level)
        if field.accumulated:
            _set(h, productDefinitionTemplateNumber=8, typeOfStatisticalProcessing=1)
        _set(h, bitsPerValue=BITS_PER_VALUE)
        ec.codes_set_values(h, np.ascontiguousarray(values, dtype=np.float64).ravel())
        return bytes(ec.codes_get_message(h))
    finally:
        ec.codes_release(h)


def _stamp(message: bytes, cycle: datetime, hour: int, field: Field) -> bytes:
    h = ec.codes_new_from_message(message)
    try:
        _set(h, dataDate=int(f"{cycle:%Y%m%d}"), dataTime=cycle.hour * 100)
        if field.accumulated:
            _set(h, stepRange=f"0-{hour}")
        else:
            _set(h, forecastTime=hour)
        return bytes(ec.codes_get_message(h))
    finally:
        ec.codes_release(h)


def _set(h: Any, **keys: Any) -> None:
    for key, value in keys.items():
        ec.codes_set(h, key, value)


def _packing(packing: str) -> str:
    try:
        return PACKINGS[packing]
    except KeyError:
        raise InvalidInput(f"unknown packing {packing!r}; valid: {', '.join(PACKINGS)}") from None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- faults


def corrupt_file(path: Path, *, pattern: str = WIND_10M_PATTERN, nbytes: int = 64) -> tuple[int, int]:
    """Invert ``nbytes`` in the middle of the packed data of the first message whose
    inventory line contains ``pattern``; the size stays the same. Return the
    inclusive byte range changed.

    With complex packing (the default; second-order spatial differencing
    spreads the error over the rest of the field) the decoded values become
    absurd and :func:`earthkeep.raster.grib.check_grib` rejects the file. With
    ``ccsds`` it usually does (a decoding error or values out of range) and with
    ``simple`` it cannot: the values stay in range and only a checksum can tell.
    """
    path = Path(path)
    start, end = _data_section(path, pattern)
    middle = (start + end) // 2
    first, last = middle - nbytes // 2, middle - nbytes // 2 + nbytes - 1
    if first < start or last > end:
        raise InvalidInput(f"cannot corrupt {nbytes} bytes inside a data section of {end - start + 1} bytes")
    with path.open("r+b") as fh:
        fh.seek(first)
        chunk = fh.read(nbytes)
        fh.seek(first)
        fh.write(bytes(b ^ 0xFF for b in chunk))
    return first, last


def _data_section(path: Path, pattern: str) -> tuple[int, int]:
    """Absolute inclusive byte range of the packed values (section 7 body) of a message."""
    lines = inventory(path).splitlines()
    offsets = [int(line.split(":")[1]) for line in lines] + [path.stat().st_size]
    found = [i for i, line in enumerate(lines) if pattern in line]
    if not found:
        raise NotFound(f"{path} has no message matching {pattern!r}")
    first, end = offsets[found[0]], offsets[found[0] + 1]
    with path.open("rb") as fh:
        fh.seek(first)
        h = ec.codes_new_from_message(fh.read(end - first))
    try:
        start = first + int(ec.codes_get_long(h, "offsetSection7")) + 5  # after length and number
    finally:
        ec.codes_release(h)
    return start, end - 5  # before "7777"


def write_mismatched_idx(path: Path, *, shift: int = 137) -> Path:
    """Write beside GRIB file ``path`` an ``.idx`` whose offsets after the first are
    ``shift`` bytes off: well formed, but its ranges do not start at messages."""
    lines = inventory(path).splitlines()
    shifted = [lines[0]]
    for line in lines[1:]:
        number, offset, rest = line.split(":", 2)
        shifted.append(f"{number}:{int(offset) + shift}:{rest}")
    target = Path(path).with_name(Path(path).name + ".idx")
    _write_atomic(target, "".join(line + "\n" for line in shifted).encode())
    return target
