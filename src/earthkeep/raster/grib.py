"""GRIB2 checks and readers, on eccodes and cfgrib.

:func:`check_grib` decodes every message of a file and proves it holds exactly
the expected fields on the expected grid, with finite, plausible values; any
doubt becomes :class:`~earthkeep.errors.IntegrityError` with the reason.
:func:`open_wind` reads 10 m wind from one or more files into an
:class:`xarray.Dataset`.

Fields are named the way NOAA's ``.idx`` inventories name them (``UGRD``,
``VGRD``, ...), by eccodes ``shortName`` (``10u``) or by cfgrib's variable name
(``u10``); any of the three is accepted in ``expected``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import eccodes as ec
import numpy as np

from earthkeep.errors import IntegrityError, InvalidInput, NotFound

if TYPE_CHECKING:
    import xarray as xr


@dataclass(frozen=True, slots=True)
class LatLonGrid:
    """A global ``regular_ll`` grid scanned north to south, from 0° east (as GFS)."""

    name: str
    step: float

    @property
    def ni(self) -> int:
        return round(360 / self.step)

    @property
    def nj(self) -> int:
        return round(180 / self.step) + 1

    @property
    def lon_last(self) -> float:
        return 360.0 - self.step

    def lats(self) -> np.ndarray:
        return np.linspace(90.0, -90.0, self.nj)

    def lons(self) -> np.ndarray:
        return np.arange(self.ni) * self.step


GRIDS: dict[str, LatLonGrid] = {
    "0p25": LatLonGrid("0p25", 0.25),  # GFS pgrb2.0p25: 1440 x 721
    "0p50": LatLonGrid("0p50", 0.5),
    "1p00": LatLonGrid("1p00", 1.0),  # GFS pgrb2.1p00: 360 x 181
}

# (discipline, parameterCategory, parameterNumber) -> NCEP abbreviation, as wgrib2 prints it.
NCEP_NAMES: dict[tuple[int, int, int], str] = {
    (0, 0, 0): "TMP",
    (0, 0, 6): "DPT",
    (0, 1, 0): "SPFH",
    (0, 1, 1): "RH",
    (0, 1, 3): "PWAT",
    (0, 1, 8): "APCP",
    (0, 2, 2): "UGRD",
    (0, 2, 3): "VGRD",
    (0, 2, 8): "VVEL",
    (0, 2, 22): "GUST",
    (0, 3, 0): "PRES",
    (0, 3, 1): "PRMSL",
    (0, 3, 5): "HGT",
    (0, 7, 6): "CAPE",
    (0, 19, 0): "VIS",
    (2, 0, 0): "LAND",
    (10, 2, 0): "ICEC",
}

# Physically possible ranges; a decoded value outside means the bytes are wrong.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "UGRD": (-200.0, 200.0),
    "VGRD": (-200.0, 200.0),
    "GUST": (0.0, 200.0),
    "TMP": (150.0, 350.0),
    "DPT": (150.0, 350.0),
    "PRMSL": (80_000.0, 110_000.0),
    "PRES": (20_000.0, 110_000.0),
    "RH": (-1.0, 101.0),
    "SPFH": (0.0, 0.1),
    "HGT": (-1_000.0, 60_000.0),
}
_ANY_FINITE = (-1e30, 1e30)

# GRIB2 code table 4.5 (type of level) -> wgrib2's words; 100 and 103 carry a value.
LEVEL_NAMES: dict[int, str] = {
    1: "surface",
    10: "entire atmosphere",
    101: "mean sea level",
    200: "entire atmosphere (considered as a single layer)",
}
_ISOBARIC, _HEIGHT = 100, 103
_STATISTICS = {0: "ave", 1: "acc", 2: "max", 3: "min"}

WIND_10M: tuple[tuple[str, str, int], ...] = (
    ("UGRD", "heightAboveGround", 10),
    ("VGRD", "heightAboveGround", 10),
)
WIND_FILTER = {"typeOfLevel": "heightAboveGround", "level": 10}


@dataclass(frozen=True, slots=True)
class GribMessage:
    """What :func:`check_grib` learned about one message."""

    number: int
    offset: int
    length: int
    name: str
    short_name: str
    cf_name: str
    type_of_level: str
    level: int
    step_range: str
    minimum: float
    maximum: float

    def matches(self, name: str, type_of_level: str, level: int) -> bool:
        names = {self.name, self.short_name, self.cf_name}
        return name in names and type_of_level == self.type_of_level and level == self.level


@dataclass(frozen=True, slots=True)
class GribSummary:
    path: Path
    size: int
    grid: LatLonGrid
    messages: tuple[GribMessage, ...]


def get_grid(grid: str | LatLonGrid) -> LatLonGrid:
    """Return the grid named ``grid`` (``"0p25"``, ``"0p50"``, ``"1p00"``) or ``grid`` itself."""
    if isinstance(grid, LatLonGrid):
        return grid
    try:
        return GRIDS[grid]
    except KeyError:
        raise InvalidInput(f"unknown grid {grid!r}; valid grids: {', '.join(GRIDS)}") from None


def check_grib(
    path: Path,
    expected: Sequence[tuple[str, str, int]] = WIND_10M,
    *,
    grid: str | LatLonGrid = "0p25",
    allow_extra: bool = False,
) -> GribSummary:
    """Decode every message of ``path`` and check it; return a summary.

    Raises :class:`IntegrityError` when a message does not decode, bytes lie
    before, between or after messages (truncation, junk), a message is not on
    ``grid``, a value is not finite or outside :data:`PLAUSIBLE`, an entry of
    ``expected`` (``(name, typeOfLevel, level)``) is absent or repeated, or a
    message that is not expected is present (unless ``allow_extra``).
    Raises :class:`NotFound` when ``path`` does not exist.
    """
    path = Path(path)
    spec = get_grid(grid)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise NotFound(f"GRIB file {path} does not exist") from None
    messages = tuple(_read_all(path, spec))
    if not messages:
        raise IntegrityError(f"{path}: no GRIB message found in {size} bytes")
    end = messages[-1].offset + messages[-1].length
    if end != size:
        raise IntegrityError(f"{path}: {size - end} bytes after the last complete message (truncated or extra data)")
    _check_expected(path, messages, expected, allow_extra)
    return GribSummary(path=path, size=size, grid=spec, messages=messages)


def _read_all(path: Path, spec: LatLonGrid) -> Iterable[GribMessage]:
    position = 0
    with path.open("rb") as fh:
        for number in itertools.count(1):
            handle = _next_handle(fh, path, number, position)
            if handle is None:
                return
            try:
                message = _summarise(path, handle, number, spec)
            except ec.CodesInternalError as exc:
                raise IntegrityError(f"{path}: message {number} does not decode: {exc}") from exc
            finally:
                ec.codes_release(handle)
            if message.offset != position:
                raise IntegrityError(
                    f"{path}: {message.offset - position} unexpected bytes before message {number} at byte {position}"
                )
            _check_plausible(path, message)
            position = message.offset + message.length
            yield message


def _next_handle(fh: IO[bytes], path: Path, number: int, position: int) -> Any:
    try:
        return ec.codes_grib_new_from_file(fh)
    except ec.CodesInternalError as exc:
        raise IntegrityError(
            f"{path}: message {number} from byte {position} is unreadable ({exc}); the file is truncated or corrupted"
        ) from exc


def _summarise(path: Path, h: Any, number: int, spec: LatLonGrid) -> GribMessage:
    grid_errors = _grid_errors(h, spec)
    if grid_errors:
        raise IntegrityError(f"{path}: message {number} is not on the {spec.name} grid: {'; '.join(grid_errors)}")
    minimum, maximum = _value_range(path, h, number)
    short_name = ec.codes_get_string(h, "shortName")
    return GribMessage(
        number=number,
        offset=_long(h, "offset"),
        length=_long(h, "totalLength"),
        name=NCEP_NAMES.get(_param(h), short_name),
        short_name=short_name,
        cf_name=ec.codes_get_string(h, "cfVarName"),
        type_of_level=ec.codes_get_string(h, "typeOfLevel"),
        level=_long(h, "level"),
        step_range=ec.codes_get_string(h, "stepRange"),
        minimum=minimum,
        maximum=maximum,
    )


def _value_range(path: Path, h: Any, number: int) -> tuple[float, float]:
    """Decode every value of the message (a damaged packed stream fails here or gives absurd values) and
    return their minimum and maximum, in two passes over the array: a NaN or an infinity shows in them."""
    values = ec.codes_get_values(h)
    if _long(h, "bitmapPresent"):
        values = values[values != ec.codes_get_double(h, "missingValue")]
    if not values.size:
        return math.nan, math.nan
    low, high = float(values.min()), float(values.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise IntegrityError(f"{path}: message {number} holds non-finite values")
    return low, high


def _grid_errors(h: Any, spec: LatLonGrid) -> list[str]:
    grid_type = ec.codes_get_string(h, "gridType")
    if grid_type != "regular_ll":
        return [f"gridType is {grid_type}, expected regular_ll"]
    errors = [
        f"{key} is {got}, expected {value}"
        for key, value in (("Ni", spec.ni), ("Nj", spec.nj))
        if (got := _long(h, key)) != value
    ]
    wanted = (
        ("latitudeOfFirstGridPointInDegrees", 90.0),
        ("longitudeOfFirstGridPointInDegrees", 0.0),
        ("latitudeOfLastGridPointInDegrees", -90.0),
        ("longitudeOfLastGridPointInDegrees", spec.lon_last),
        ("iDirectionIncrementInDegrees", spec.step),
        ("jDirectionIncrementInDegrees", spec.step),
    )
    for key, value in wanted:
        got = ec.codes_get_double(h, key)
        if not math.isclose(got, value, abs_tol=1e-6):
            errors.append(f"{key} is {got}, expected {value}")
    return errors


def _check_plausible(path: Path, message: GribMessage) -> None:
    low, high = PLAUSIBLE.get(message.name, _ANY_FINITE)
    if message.minimum < low or message.maximum > high:
        raise IntegrityError(
            f"{path}: message {message.number} ({message.name} {message.type_of_level} {message.level}) "
            f"has values {message.minimum:g}..{message.maximum:g} outside the plausible {low:g}..{high:g}; "
            "the bytes are probably corrupted"
        )


def _check_expected(
    path: Path, messages: Sequence[GribMessage], expected: Sequence[tuple[str, str, int]], allow_extra: bool
) -> None:
    matched: set[int] = set()
    for name, type_of_level, level in expected:
        hits = [m for m in messages if m.matches(name, type_of_level, level)]
        if len(hits) != 1:
            found = ", ".join(f"{m.name}:{m.type_of_level}:{m.level}" for m in messages)
            what = "missing" if not hits else f"present {len(hits)} times"
            raise IntegrityError(f"{path}: {name} at {type_of_level} {level} is {what}; the file holds {found}")
        matched.add(hits[0].number)
    extra = [m for m in messages if m.number not in matched]
    if extra and not allow_extra:
        names = ", ".join(f"{m.name}:{m.type_of_level}:{m.level}" for m in extra)
        raise IntegrityError(f"{path}: unexpected messages {names}")


def inventory(path: Path) -> str:
    """The inventory (``.idx`` text) of a GRIB2 file, as ``wgrib2 -s`` prints it::

        1:0:d=2024010100:PRMSL:mean sea level:anl:
        27:1524604:d=2024010100:UGRD:10 m above ground:3 hour fcst:

    Offsets are read by eccodes. Covers the parameters of :data:`NCEP_NAMES`
    (others print as ``varD_C_N``), the levels of :data:`LEVEL_NAMES` plus
    isobaric and height-above-ground levels, and steps in hours; anything else
    raises :class:`InvalidInput`.
    """
    lines: list[str] = []
    with Path(path).open("rb") as fh:
        while (h := ec.codes_grib_new_from_file(fh)) is not None:
            try:
                lines.append(_inventory_line(h, len(lines) + 1))
            finally:
                ec.codes_release(h)
    return "".join(line + "\n" for line in lines)


def _inventory_line(h: Any, number: int) -> str:
    param = _param(h)
    name = NCEP_NAMES.get(param, "var{}_{}_{}".format(*param))
    date = f"d={_long(h, 'dataDate'):08d}{_long(h, 'dataTime') // 100:02d}"
    return f"{number}:{_long(h, 'offset')}:{date}:{name}:{_level_text(h)}:{_forecast_text(h)}:"


def _level_text(h: Any) -> str:
    kind = _long(h, "typeOfFirstFixedSurface")
    if kind in LEVEL_NAMES:
        return LEVEL_NAMES[kind]
    if kind not in (_ISOBARIC, _HEIGHT) or ec.codes_is_missing(h, "scaleFactorOfFirstFixedSurface"):
        raise InvalidInput(f"level type {kind} has no inventory wording here")
    value = _long(h, "scaledValueOfFirstFixedSurface") / 10 ** _long(h, "scaleFactorOfFirstFixedSurface")
    return f"{value / 100:g} mb" if kind == _ISOBARIC else f"{value:g} m above ground"


def _forecast_text(h: Any) -> str:
    if _long(h, "indicatorOfUnitOfTimeRange") != 1:
        raise InvalidInput("inventory() only words steps counted in hours")
    if _long(h, "productDefinitionTemplateNumber") == 8:
        kind = _STATISTICS.get(_long(h, "typeOfStatisticalProcessing"), "stat")
        return f"{_long(h, 'startStep')}-{_long(h, 'endStep')} hour {kind} fcst"
    step = _long(h, "forecastTime")
    return "anl" if step == 0 else f"{step} hour fcst"


def _long(h: Any, key: str) -> int:
    return int(ec.codes_get_long(h, key))


def _param(h: Any) -> tuple[int, int, int]:
    return _long(h, "discipline"), _long(h, "parameterCategory"), _long(h, "parameterNumber")


def open_wind(paths: Path | Iterable[Path]) -> xr.Dataset:
    """Read 10 m wind (``u10``, ``v10``, m/s) from GRIB files into memory.

    The result has dimensions ``valid_time`` (one per file, sorted),
    ``latitude`` and ``longitude``. Files may hold other messages; only
    ``heightAboveGround`` 10 m is read, and no cfgrib index files are written.
    Raises :class:`NotFound` for a missing file and :class:`IntegrityError`
    for a file without 10 m wind.
    """
    import xarray as xr

    paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if not paths:
        raise InvalidInput("open_wind needs at least one GRIB file")
    datasets = [_read_wind(path) for path in paths]
    if len(datasets) == 1:
        return datasets[0]
    combined = xr.concat(datasets, dim="valid_time", data_vars="all", coords="different", compat="equals", join="exact")
    return combined.sortby("valid_time")


def _read_wind(path: Path) -> xr.Dataset:
    import xarray as xr

    if not path.exists():
        raise NotFound(f"GRIB file {path} does not exist")
    backend_kwargs = {"filter_by_keys": WIND_FILTER, "indexpath": ""}
    with xr.open_dataset(path, engine="cfgrib", backend_kwargs=backend_kwargs) as ds:
        missing = {"u10", "v10"} - set(ds.data_vars)
        if missing:
            raise IntegrityError(f"{path}: no {', '.join(sorted(missing))} at 10 m above ground")
        return ds[["u10", "v10"]].load().expand_dims("valid_time")
