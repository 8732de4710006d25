"""The collector: parse a body, validate every record, hand the good ones to the broker.

``submit`` answers only after the broker durably accepted the batch (JetStream
publish acks, or the embedded write committed). Refused records are reported
one by one (index and reason) and kept in the dead-letter table.

Bodies are one JSON object, a JSON array of objects, or NDJSON (one object per
line; a malformed line refuses that record only).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import orjson
import structlog
from sqlalchemy import Engine

from earthkeep.errors import InvalidInput, PayloadTooLarge, SourceUnavailable
from earthkeep.ingest.broker import Broker
from earthkeep.ingest.deadletters import record_dead_letters
from earthkeep.ingest.models import Malformed, Obs, Rejection, Wire, check_records, ndjson_lines, parse_lines
from earthkeep.ingest.stations import StationDirectory

log = structlog.get_logger(__name__)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")


class BatchTooLarge(PayloadTooLarge):
    """More records (or bytes) than one request may carry."""


@dataclass
class Parsed:
    """Records in body order (unparseable NDJSON lines hold a placeholder and an entry in ``errors``).

    :meth:`texts` gives each record's JSON text when the body had it (NDJSON
    lines, or a JSON array msgspec decoded whole): a broker sending one message
    per record forwards that text instead of encoding the record again.
    """

    records: list[Any]
    errors: list[Rejection] = field(default_factory=list)
    body: bytes | None = None  # NDJSON, when the texts are its lines

    @property
    def total(self) -> int:
        return len(self.records)

    def texts(self) -> list[bytes] | None:
        """The JSON text of every record, in body order, or None when the body did not give them."""
        if self.body is not None:
            return ndjson_lines(self.body)
        if self.records and all(type(r) is Wire for r in self.records):
            return [_ENCODER.encode(w) for w in self.records]
        return None


def parse_body(body: bytes, content_type: str | None, *, max_records: int) -> Parsed:
    """Records of a JSON object, JSON array or NDJSON body (raise InvalidInput / BatchTooLarge)."""
    ctype = (content_type or "application/json").split(";", 1)[0].strip().lower()
    if ctype in NDJSON_TYPES:
        parsed = _ndjson(body)
    else:
        try:
            wires = _WIRES.decode(body)  # the common case: an array of well-formed observations
        except (msgspec.ValidationError, msgspec.DecodeError):
            wires = None
        if wires is not None:
            if len(wires) > max_records:
                raise BatchTooLarge(f"{len(wires)} records in one request; at most {max_records} are accepted")
            return Parsed(wires)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"body is not valid JSON ({exc}); send an object, an array of objects, "
                               "or NDJSON with Content-Type: application/x-ndjson") from exc
        if isinstance(data, dict):
            parsed = Parsed([data])
        elif isinstance(data, list):
            parsed = Parsed(data)
        else:
            raise InvalidInput(f"body is a JSON {type(data).__name__}; send an object or an array of objects")
    if parsed.total > max_records:
        raise BatchTooLarge(f"{parsed.total} records in one request; at most {max_records} are accepted")
    return parsed


def _ndjson(body: bytes) -> Parsed:
    records = parse_lines(body)
    errors: list[Rejection] = []
    if any(type(r) is Malformed for r in records):  # rare: say which line of the body it was
        numbers = [n for n, line in enumerate(body.splitlines(), start=1) if line.strip()]
        for i, record in enumerate(records):
            if type(record) is Malformed:
                errors.append(Rejection(i, f"line {numbers[i]}: {record.reason}", None, str(record)))
                records[i] = _MALFORMED
    return Parsed(records, errors, body)


_MALFORMED = object()
_WIRES = msgspec.json.Decoder(list[Wire])
_ENCODER = msgspec.json.Encoder()


@dataclass
class SubmitResult:
    """What the collector did with one request: ``received = accepted + duplicates + len(rejected)``.

    ``accepted`` records were newly stored (embedded) or newly queued (nats);
    ``duplicates`` repeat a record earlier in the same request, or one the
    broker already had (stored, or queued within JetStream's duplicate window).
    """

    received: int
    accepted: int
    duplicates: int
    rejected: list[Rejection]
    trace_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"received": self.received, "accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": len(self.rejected), "trace_id": self.trace_id,
                "errors": [{"index": r.index, "station_id": r.station_id, "reason": r.reason}
                           for r in self.rejected]}


class Collector:
    """Validates observations and hands them to a :class:`Broker`."""

    def __init__(self, broker: Broker, stations: StationDirectory, engine: Engine, *,
                 future_tolerance_s: float = 300.0) -> None:
        self.broker = broker
        self.stations = stations
        self.engine = engine
        self.future_tolerance_s = future_tolerance_s

    async def submit(self, parsed: Parsed, *, trace_id: str | None) -> SubmitResult:
        """Validate, dead-letter the refused, publish the rest; return once the broker accepted them."""
        records = parsed.records
        try:
            ids = set(map(_WIRE_STATION, records))  # all decoded lines (the usual case): in C
        except AttributeError:
            ids = {sid for r in records if isinstance(sid := _station_of(r), str)}
        if any(not self.stations.cached(i) for i in ids):
            try:
                await asyncio.to_thread(self.stations.prepare, ids)
            except SourceUnavailable as exc:  # keep collecting for the stations we know
                log.warning("ingest.station_registry_unavailable", error=str(exc))
        kept = [i for i, r in enumerate(records) if r is not _MALFORMED] if parsed.errors else None
        checked = check_records(
            records if kept is None else [records[i] for i in kept], known_station=self.stations.cached,
            future_tolerance_s=self.future_tolerance_s)
        firsts = _first_of_each_key(checked.good)
        good = checked.good if firsts is None else [checked.good[i] for i in firsts]
        repeats = len(checked.good) - len(good)  # the same station and time again in this request
        rejected = _merge(parsed, checked.bad)
        if rejected:
            await self._dead_letter(rejected, trace_id)
        lines = None
        if getattr(self.broker, "forwards_texts", False) and (texts := parsed.texts()) is not None:
            at = checked.positions if kept is None else [kept[i] for i in checked.positions]
            lines = [texts[at[i]] for i in firsts] if firsts is not None else [texts[i] for i in at]
        result = await self.broker.publish(good, trace_id=trace_id, lines=lines) if good else None
        known = result.duplicates if result else 0  # stored or queued before
        log.info("ingest.collected", trace_id=trace_id, received=len(records), accepted=len(good) - known,
                 duplicates=repeats + known, rejected=len(rejected))
        return SubmitResult(len(records), len(good) - known, repeats + known, rejected, trace_id)

    async def _dead_letter(self, rejected: Sequence[Rejection], trace_id: str | None) -> None:
        try:
            await asyncio.to_thread(record_dead_letters, self.engine, "collector", rejected, trace_id)
        except Exception as exc:  # the caller still gets every reason; only the copy for inspection is lost
            log.error("ingest.dead_letter_failed", trace_id=trace_id, records=len(rejected), error=str(exc))


_WIRE_STATION = attrgetter("station_id")
_KEY = itemgetter(0, 1)  # (station_id, ts)


def _first_of_each_key(rows: Sequence[Obs]) -> list[int] | None:
    """The index of the first row of each (station, time), in order; None when no key repeats (checked in C)."""
    if len(set(map(_KEY, rows))) == len(rows):
        return None
    firsts: dict[tuple[str, Any], int] = {}
    for i, row in enumerate(rows):
        firsts.setdefault(_KEY(row), i)
    return list(firsts.values())


def _station_of(record: Any) -> Any:
    """The ``station_id`` a record names (anything, for a record that is not an object)."""
    if type(record) is Wire:
        return record.station_id
    return record.get("station_id") if isinstance(record, dict) else None


def _merge(parsed: Parsed, bad: list[Rejection]) -> list[Rejection]:
    """Map validation indexes (over the parseable records) back to body positions; add parse errors."""
    if not parsed.errors:
        return bad
    positions = [i for i, r in enumerate(parsed.records) if r is not _MALFORMED]
    moved = [Rejection(positions[r.index], r.reason, r.station_id, r.record) for r in bad]
    return sorted([*moved, *parsed.errors], key=lambda r: r.index)
