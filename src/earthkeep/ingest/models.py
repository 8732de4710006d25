"""Station observations and stations: the records, their physical ranges, their validation.

An observation is what one station measured at one instant (UTC)::

    {"station_id": "KSEA", "timestamp": "2024-03-01T12:00:00Z", "temperature": 11.2,
     "humidity": 81, "pressure": 1012.4, "wind_speed": 3.1, "wind_direction": 200,
     "precipitation": 0.2}

Every measure is optional, but at least one must be present. Timestamps without
a zone are taken as UTC; timestamps more than ``future_tolerance_s`` ahead of
the clock are refused. Unknown fields are refused (a misspelt measure would
otherwise vanish silently). :func:`validate_records` checks a batch and returns
the good records and one :class:`Rejection` (index and reason) per bad one.

Records arrive as JSON text (an NDJSON line, a message body) or as parsed
objects. :func:`parse_line` decodes a line straight into a :class:`Wire`
(msgspec checks the types, ranges and station pattern in C); only lines it
refuses are parsed again with orjson so that :class:`Observation` (pydantic)
can give the reason. Both paths accept exactly the same records (a test checks
it), the fast one at a fraction of the cost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NamedTuple

import msgspec
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

STATION_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"

#: measure -> (unit, lowest, highest): the physical ranges a record must respect
MEASURES: dict[str, tuple[str, float, float]] = {
    "temperature": ("degC", -90.0, 60.0),
    "humidity": ("%", 0.0, 100.0),
    "pressure": ("hPa", 300.0, 1100.0),
    "wind_speed": ("m/s", 0.0, 115.0),
    "wind_direction": ("deg", 0.0, 360.0),
    "precipitation": ("mm", 0.0, 500.0),
}
MEASURE_NAMES: tuple[str, ...] = tuple(MEASURES)


def _measure(name: str) -> Any:
    unit, lo, hi = MEASURES[name]
    return Annotated[float | None, Field(None, ge=lo, le=hi, strict=True, description=f"{name} in {unit}")]


class Observation(BaseModel):
    """One station's measurements at one UTC instant."""

    model_config = ConfigDict(extra="forbid")

    station_id: str = Field(pattern=STATION_ID, description="a registered station id")
    timestamp: datetime = Field(description="ISO 8601; without a zone it is taken as UTC")
    temperature: _measure("temperature")  # type: ignore[valid-type]
    humidity: _measure("humidity")  # type: ignore[valid-type]
    pressure: _measure("pressure")  # type: ignore[valid-type]
    wind_speed: _measure("wind_speed")  # type: ignore[valid-type]
    wind_direction: _measure("wind_direction")  # type: ignore[valid-type]
    precipitation: _measure("precipitation")  # type: ignore[valid-type]

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        try:
            return v.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{v.isoformat()} is outside the years 1 to 9999 once converted to UTC") from None

    @model_validator(mode="after")
    def _some_measure(self) -> Observation:
        if all(getattr(self, m) is None for m in MEASURE_NAMES):
            raise ValueError(f"no measurement given; send at least one of {', '.join(MEASURE_NAMES)}")
        return self

    def row(self) -> Obs:
        """The compact form the pipeline carries."""
        return Obs(self.station_id, self.timestamp, *(getattr(self, m) for m in MEASURE_NAMES))


def _bounded(name: str) -> Any:
    _, lo, hi = MEASURES[name]
    return Annotated[float, msgspec.Meta(ge=lo, le=hi)] | None


class Obs(NamedTuple):
    """A validated observation as the pipeline carries it (a row of ``ingest_observations``).

    The annotations carry the physical ranges for msgspec, which decodes broker
    messages straight into ``Obs`` (see :mod:`earthkeep.ingest.messages`).
    """

    station_id: str
    ts: Annotated[datetime, msgspec.Meta(tz=True)]
    temperature: _bounded("temperature") = None  # type: ignore[valid-type]
    humidity: _bounded("humidity") = None  # type: ignore[valid-type]
    pressure: _bounded("pressure") = None  # type: ignore[valid-type]
    wind_speed: _bounded("wind_speed") = None  # type: ignore[valid-type]
    wind_direction: _bounded("wind_direction") = None  # type: ignore[valid-type]
    precipitation: _bounded("precipitation") = None  # type: ignore[valid-type]

    @property
    def key(self) -> str:
        """The dedupe key: station and timestamp (also the JetStream ``Nats-Msg-Id``)."""
        return dedupe_key(self.station_id, self.ts)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"station_id": self.station_id, "timestamp": iso(self.ts)}
        for name, value in zip(MEASURE_NAMES, self[2:], strict=True):
            if value is not None:
                out[name] = value
        return out


def iso(ts: datetime) -> str:
    """``2024-03-01T12:00:00.000000Z`` (always UTC, always microseconds)."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def dedupe_key(station_id: str, ts: datetime) -> str:
    """``station|2024-03-01T12:00:00.000000Z``: the same instant always gives the same key."""
    return f"{station_id}|{iso(ts)}"


class Station(BaseModel):
    """A registered station: id, name, location (WGS84) and elevation (m)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=STATION_ID)
    name: str = Field(min_length=1, max_length=200)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    elevation: float | None = Field(None, ge=-500, le=9000, description="metres above sea level")


@dataclass(frozen=True)
class Rejection:
    """Why record number ``index`` of a batch was refused."""

    index: int
    reason: str
    station_id: str | None = None
    record: Any = None


def describe(error: ValidationError) -> str:
    """One line per problem: ``temperature: Input should be less than or equal to 60 (got 75.0)``."""
    parts = []
    for err in error.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        got = err.get("input")
        got_txt = "" if isinstance(got, dict) or err["type"] == "missing" else f" (got {got!r})"
        parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}{got_txt}")
    return "; ".join(parts)


@dataclass
class Checked:
    """A batch split into valid observations and rejections; ``positions[i]`` is the index of ``good[i]``."""

    good: list[Obs]
    bad: list[Rejection]
    positions: list[int]


def check_records(
    records: Sequence[Any], *, known_station: Callable[[str], bool] | Collection[str],
    now: datetime | None = None, future_tolerance_s: float = 300.0,
) -> Checked:
    """Split ``records`` (dicts, :class:`Wire` objects from :func:`parse_line`, or anything else) in input order."""
    limit = (now or datetime.now(UTC)) + timedelta(seconds=future_tolerance_s)
    is_known = known_station if callable(known_station) else known_station.__contains__
    out = Checked([], [], [])
    good, positions = out.good, out.positions
    accepted_ids: set[str] = set()  # station ids of this batch that match the pattern and are registered
    for i, raw in enumerate(records):
        if type(raw) is Wire and (obs := _accept_wire(raw, accepted_ids, is_known, limit)) is not None:
            good.append(obs)
            positions.append(i)
        else:
            _check_one(i, raw, is_known, limit, future_tolerance_s, out)
    return out


def _accept_wire(w: Wire, accepted_ids: set[str], is_known: Callable[[str], bool], limit: datetime) -> Obs | None:
    """The :class:`Obs` of a decoded line that passes every check, else ``None`` (:func:`_check_one` says why)."""
    sid = w.station_id
    if sid not in accepted_ids:
        if not (_STATION.fullmatch(sid) and is_known(sid)):
            return None
        accepted_ids.add(sid)
    stamp = w.timestamp
    if len(stamp) < 19 or stamp[4] != "-":
        return None
    try:
        ts = _fromisoformat(stamp)
        if ts.tzinfo is not UTC:
            ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    t, h, p, ws, wd, pr = w.temperature, w.humidity, w.pressure, w.wind_speed, w.wind_direction, w.precipitation
    if ts > limit or (t is None and h is None and p is None and ws is None and wd is None and pr is None):
        return None
    return _new_tuple(Obs, (sid, ts, t, h, p, ws, wd, pr))  # Obs(...) without the keyword handling


def _check_one(i: int, raw: Any, is_known: Callable[[str], bool], limit: datetime, future_tolerance_s: float,
               out: Checked) -> None:
    """Check record ``i`` the careful way: append it to ``out.good`` or its reason to ``out.bad``."""
    obs = _from_wire(raw, set()) if type(raw) is Wire else _fast(raw)
    reason = ""
    if type(raw) is Malformed:
        reason = raw.reason
    elif obs is None:
        if type(raw) is Wire:
            raw = msgspec.structs.asdict(raw)
        reason, obs = _slow(raw)
    if obs is not None:
        if obs.ts > limit:
            reason = (f"timestamp: {obs.ts.isoformat()} is in the future (more than "
                      f"{future_tolerance_s:.0f} s ahead of the server clock)")
        elif not is_known(obs.station_id):
            reason = (f"station_id: unknown station {obs.station_id!r}; register it first "
                      "(POST /stations or `earthkeep stations add`)")
        else:
            out.good.append(obs)
            out.positions.append(i)
            return
    if type(raw) is Wire:
        raw = msgspec.structs.asdict(raw)
    sid = raw.get("station_id") if isinstance(raw, dict) else None
    out.bad.append(Rejection(i, reason, sid if isinstance(sid, str) else None, raw))


def validate_records(
    records: Sequence[Any], *, known_station: Callable[[str], bool] | Collection[str],
    now: datetime | None = None, future_tolerance_s: float = 300.0,
) -> tuple[list[Obs], list[Rejection]]:
    """Split ``records`` into valid observations and rejections (in input order)."""
    checked = check_records(records, known_station=known_station, now=now, future_tolerance_s=future_tolerance_s)
    return checked.good, checked.bad


# ------------------------------------------------------------------ fast paths


class Wire(msgspec.Struct, forbid_unknown_fields=True):
    """An observation as JSON carries it, checked by msgspec while decoding (see :func:`parse_line`).

    The station id's pattern is checked afterwards, once per distinct id in a
    batch (a pattern here would run a regular expression per record).
    """

    station_id: str
    timestamp: str
    temperature: _bounded("temperature") = None  # type: ignore[valid-type]
    humidity: _bounded("humidity") = None  # type: ignore[valid-type]
    pressure: _bounded("pressure") = None  # type: ignore[valid-type]
    wind_speed: _bounded("wind_speed") = None  # type: ignore[valid-type]
    wind_direction: _bounded("wind_direction") = None  # type: ignore[valid-type]
    precipitation: _bounded("precipitation") = None  # type: ignore[valid-type]


_WIRE = msgspec.json.Decoder(Wire)


class Malformed(str):
    """The text of a line that is not JSON at all (``reason`` says why)."""

    reason: str


def parse_line(line: bytes) -> Any:
    """A :class:`Wire` when ``line`` is a well-formed observation, else what orjson makes of it.

    A line that is not JSON becomes a :class:`Malformed` string (its text, cut at 1,000 characters).
    """
    try:
        return _WIRE.decode(line)
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError:
        pass
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        bad = Malformed(line[:1000].decode(errors="replace"))
        bad.reason = f"malformed JSON ({exc})"
        return bad


def ndjson_lines(text: bytes) -> list[bytes]:
    """The non-blank lines of NDJSON ``text``."""
    return [line for line in text.splitlines() if line.strip()]


def parse_lines(text: bytes) -> list[Any]:
    """Every non-blank line of NDJSON ``text`` as :func:`parse_line` gives it.

    When every line is a well-formed observation (the usual case) msgspec
    decodes them all in one call. When one is not, msgspec's error names the
    line (``at `$[17]...```): the lines before it are decoded in one call, that
    line alone, and the rest again in one call, so a few bad lines in a large
    body cost about one more decoding pass, not one call per line. Errors that
    name no line (malformed JSON) are found by decoding in halves.
    """
    try:
        return _WIRE.decode_lines(text)
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    lines = ndjson_lines(text)
    out: list[Any] = []
    start = 0
    while start < len(lines):
        try:
            out += _WIRE.decode_lines(b"\n".join(lines[start:]))
            break
        except msgspec.ValidationError as exc:
            bad = _failing_line(exc, len(lines) - start)
        except msgspec.DecodeError:
            bad = None
        if bad is None:
            _decode_halves(lines, start, len(lines), out)
            break
        if bad:
            out += _WIRE.decode_lines(b"\n".join(lines[start:start + bad]))  # all valid: msgspec stopped after
        out.append(parse_line(lines[start + bad]))
        start += bad + 1
    return out


_AT_LINE = re.compile(r"at `\$\[(\d+)\]")


def _failing_line(exc: msgspec.ValidationError, count: int) -> int | None:
    """The index of the line a ``decode_lines`` error names (None when it names none that exists)."""
    m = _AT_LINE.search(str(exc))
    index = int(m.group(1)) if m else -1
    return index if 0 <= index < count else None


_SMALLEST_SPLIT = 8  # below this many lines, decode them one by one


def _decode_halves(lines: list[bytes], lo: int, hi: int, out: list[Any]) -> None:
    """Append the records of ``lines[lo:hi]`` (known to hold at least one line msgspec refuses)."""
    if hi - lo <= _SMALLEST_SPLIT:
        out += [parse_line(line) for line in lines[lo:hi]]
        return
    mid = (lo + hi) // 2
    for a, b in ((lo, mid), (mid, hi)):
        try:
            wires = _WIRE.decode_lines(b"\n".join(lines[a:b]))
        except (msgspec.ValidationError, msgspec.DecodeError):
            _decode_halves(lines, a, b, out)
            continue
        if len(wires) == b - a:
            out += wires
        else:  # a line msgspec skipped (cannot happen for non-blank lines; stay exact if it does)
            out += [parse_line(line) for line in lines[a:b]]


def _from_wire(w: Wire, valid_ids: set[str]) -> Obs | None:
    """The :class:`Obs` of a decoded line, or ``None`` for the slow path to explain."""
    sid = w.station_id
    if sid not in valid_ids:
        if not _STATION.fullmatch(sid):
            return None
        valid_ids.add(sid)
    stamp = w.timestamp
    if len(stamp) < 19 or stamp[4] != "-":
        return None
    try:
        ts = datetime.fromisoformat(stamp)
        tz = ts.tzinfo
        if tz is not UTC:
            ts = ts.replace(tzinfo=UTC) if tz is None else ts.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    values = (w.temperature, w.humidity, w.pressure, w.wind_speed, w.wind_direction, w.precipitation)
    if values == _NO_MEASURES:
        return None
    return _new_tuple(Obs, (sid, ts, *values))  # Obs(...) without the keyword handling


_NO_MEASURES = (None,) * len(MEASURE_NAMES)
_new_tuple = tuple.__new__
_fromisoformat = datetime.fromisoformat


_STATION = re.compile(STATION_ID)
_FIELDS = frozenset(("station_id", "timestamp", *MEASURE_NAMES))
_RANGES = tuple((name, lo, hi) for name, (_, lo, hi) in MEASURES.items())


def _fast(raw: Any) -> Obs | None:
    """The common case without pydantic; ``None`` sends the record to :func:`_slow` for the reason.

    It accepts exactly what :class:`Observation` accepts for well-formed input
    (a test checks both agree); anything unusual goes the slow way.
    """
    if type(raw) is not dict or not _FIELDS.issuperset(raw):
        return None
    sid, stamp = raw.get("station_id"), raw.get("timestamp")
    if (type(sid) is not str or type(stamp) is not str or not _STATION.fullmatch(sid)
            or len(stamp) < 19 or stamp[4] != "-"):
        return None
    try:
        ts = datetime.fromisoformat(stamp)
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    values: list[float | None] = []
    for name, lo, hi in _RANGES:
        v = raw.get(name)
        if v is not None and ((type(v) is not float and type(v) is not int) or not lo <= v <= hi):
            return None
        values.append(None if v is None else float(v))
    if values.count(None) == len(values):
        return None
    return Obs(sid, ts, *values)


def _slow(raw: Any) -> tuple[str, Obs | None]:
    if not isinstance(raw, dict):
        return f"expected a JSON object, got {_json_type(raw)}", None
    try:
        return "", Observation.model_validate(raw).row()
    except ValidationError as exc:
        return describe(exc), None


def _json_type(value: Any) -> str:
    names = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)
