"""What a broker message holds, and how a consumer turns it back into observations.

Two bodies travel on the observations stream:

* **rows** (batch mode, the default; header ``Earthkeep-Format: obs-rows/1``): a
  JSON array of validated observations, each an array in the column order of
  ``ingest_observations``::

      [["KSEA","2024-03-01T12:00:00Z",11.2,81.0,1012.4,3.1,200.0,0.2],
       ["KSEA","2024-03-01T12:01:00Z",11.3,null,1012.4,null,null,null]]

  The collector encodes it from the rows it validated (so the text is
  canonical: UTC with ``Z``, shortest float form, and the same records always
  give the same bytes and the same ``Nats-Msg-Id``). A consumer decodes it in
  one msgspec call straight into :class:`~earthkeep.ingest.models.Obs`, with
  the types, the physical ranges and the time zone checked in C.
* **records** (record mode, and what older collectors sent): NDJSON, one API
  record per line, validated again as the collector validates it.

A consumer is defensive about both: a body that does not decode as rows, or a
row that breaks a rule msgspec cannot express (the station id pattern, at least
one measure), is checked record by record and the bad ones are dead-lettered
with their reason; the rest of the message is still written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from earthkeep.ingest.models import MEASURE_NAMES, STATION_ID, Obs, Rejection, check_records, parse_lines

FORMAT_HEADER = "Earthkeep-Format"
ROWS_FORMAT = "obs-rows/1"

_ENCODER = msgspec.json.Encoder()
_ROWS = msgspec.json.Decoder(list[Obs])
_NO_MEASURES = (None,) * len(MEASURE_NAMES)
_FAR_FUTURE_S = 86400 * 365  # the collector applied the real tolerance; this only catches nonsense
_STATION = re.compile(STATION_ID)


def encode_rows(rows: Sequence[Obs]) -> bytes:
    """The rows body of ``rows`` (validated observations, timestamps in UTC)."""
    return _ENCODER.encode(rows)


def decode_message(data: bytes, headers: dict[str, str] | None) -> tuple[list[Obs], list[Rejection], int]:
    """(valid observations, rejections, records seen) of one message of either format."""
    if headers and headers.get(FORMAT_HEADER) == ROWS_FORMAT:
        return decode_rows(data)
    good, bad = _check(parse_lines(data))
    return good, bad, len(good) + len(bad)


def decode_rows(data: bytes) -> tuple[list[Obs], list[Rejection], int]:
    """A rows body: one C decode when it is well formed, record by record when it is not."""
    try:
        rows = _ROWS.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _rows_one_by_one(data)
    if _plausible(rows):
        return rows, [], len(rows)
    good, bad = _check([_as_record(r) for r in rows])
    return good, bad, len(rows)


def _plausible(rows: list[Obs]) -> bool:
    """True when no row breaks a rule the decoder does not check (station pattern, some measure, far future)."""
    if not rows:
        return True
    match = _STATION.fullmatch
    if not all(match(sid) for sid in {r[0] for r in rows}):
        return False
    if max(r[1] for r in rows) > datetime.now(UTC) + timedelta(seconds=_FAR_FUTURE_S):
        return False
    return all(r[2:] != _NO_MEASURES for r in rows)


def _rows_one_by_one(data: bytes) -> tuple[list[Obs], list[Rejection], int]:
    try:
        items = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        text = data[:1000].decode(errors="replace")
        return [], [Rejection(0, f"message is not JSON ({exc}); dropped", None, text)], 1
    if not isinstance(items, list):
        return [], [Rejection(0, "message is not a JSON array of rows; dropped", None, items)], 1
    good, bad = _check([_as_record(r) for r in items])
    return good, bad, len(items)


def _as_record(row: Any) -> Any:
    """A row as the API record it stands for (anything else is passed on to be refused with a reason)."""
    if isinstance(row, (list, tuple)) and len(row) == 2 + len(MEASURE_NAMES):
        ts = row[1].isoformat() if hasattr(row[1], "isoformat") else row[1]
        record = {"station_id": row[0], "timestamp": ts}
        record.update((m, v) for m, v in zip(MEASURE_NAMES, row[2:], strict=True) if v is not None)
        return record
    return row


def _check(records: list[Any]) -> tuple[list[Obs], list[Rejection]]:
    checked = check_records(records, known_station=_any_station, future_tolerance_s=_FAR_FUTURE_S)
    return checked.good, checked.bad


def _any_station(_: str) -> bool:  # the collector checked the registry; a record is not refused for it later
    return True
