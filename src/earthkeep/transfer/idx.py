"""GRIB inventories (NOAA ``.idx``, as ``wgrib2 -s`` prints them) to byte ranges.

A line reads ``number:offset:d=YYYYMMDDHH:VARIABLE:level:forecast:`` — e.g.
``588:428490334:d=2024010100:UGRD:10 m above ground:3 hour fcst:``. Message
``n`` spans ``offset[n] .. offset[n+1] - 1``; the last message of a file has
no successor, so its range is open-ended (``Range: bytes=<offset>-``) unless
the file size is known. Sub-messages (``2.1``, ``2.2``) share one offset and
one range.

Ranges are inclusive ``(first, last)`` pairs as in HTTP ``Range`` headers,
``last`` being ``None`` for an open end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from earthkeep.errors import InvalidInput

ByteRange = tuple[int, int | None]

_NUMBER = re.compile(r"^(\d+)(?:\.(\d+))?$")
_OFFSET = re.compile(r"^\d+$")
_DATE = re.compile(r"^d=(\d{10})$")


@dataclass(frozen=True, slots=True)
class IdxEntry:
    """One line of an inventory."""

    number: int
    offset: int
    date: datetime
    variable: str
    level: str
    forecast: str
    line: str
    part: int | None = None  # the ``1`` of a sub-message numbered ``2.1``
    extra: str = ""  # anything after the forecast field, e.g. ``ens mean``

    @property
    def search_text(self) -> str:
        """``:VARIABLE:level:forecast:``, the text :func:`select` patterns are matched against."""
        return f":{self.variable}:{self.level}:{self.forecast}:"


def parse_idx(text: str) -> list[IdxEntry]:
    """Parse an inventory strictly; raise :class:`InvalidInput` on anything unexpected.

    Rejected: an empty inventory, blank lines inside it, lines with fewer than
    six fields or without the trailing colon, a bad number, offset or date,
    empty variable/level/forecast, a first offset other than 0, message
    numbers that do not count up by one, and offsets that do not increase
    (sub-messages of one message excepted, which share their offset).
    """
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    if lines == [""]:
        raise InvalidInput("the inventory is empty; a GRIB file has at least one message")
    entries: list[IdxEntry] = []
    for lineno, line in enumerate(lines, start=1):
        entry = _parse_line(line, lineno)
        _check_order(entries[-1] if entries else None, entry, lineno)
        entries.append(entry)
    return entries


def _parse_line(line: str, lineno: int) -> IdxEntry:
    fields = line.split(":")
    if len(fields) < 7:
        raise InvalidInput(
            f"inventory line {lineno} {line!r} has {len(fields) - 1} colons; expected "
            "'number:offset:d=YYYYMMDDHH:VARIABLE:level:forecast:'"
        )
    number, offset, date, variable, level, forecast = fields[:6]
    match = _NUMBER.match(number)
    if not match:
        raise InvalidInput(f"inventory line {lineno}: message number {number!r} is not a positive integer")
    if not _OFFSET.match(offset):
        raise InvalidInput(f"inventory line {lineno}: byte offset {offset!r} is not a non-negative integer")
    if not variable.strip() or not level.strip() or not forecast.strip():
        raise InvalidInput(f"inventory line {lineno} {line!r} has an empty variable, level or forecast")
    return IdxEntry(
        number=int(match.group(1)),
        part=int(match.group(2)) if match.group(2) else None,
        offset=int(offset),
        date=_parse_date(date, lineno),
        variable=variable,
        level=level,
        forecast=forecast,
        extra=":".join(fields[6:]),
        line=line,
    )


def _parse_date(text: str, lineno: int) -> datetime:
    match = _DATE.match(text)
    if not match:
        raise InvalidInput(f"inventory line {lineno}: reference time {text!r} is not 'd=YYYYMMDDHH'")
    try:
        return datetime.strptime(match.group(1), "%Y%m%d%H").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(f"inventory line {lineno}: reference time {text!r} is not a valid date") from None


def _check_order(previous: IdxEntry | None, entry: IdxEntry, lineno: int) -> None:
    if previous is None:
        if entry.offset != 0 or entry.number != 1:
            raise InvalidInput(
                f"inventory line 1 is message {entry.number} at byte {entry.offset}; "
                "an inventory starts with message 1 at byte 0"
            )
        return
    same_message = entry.number == previous.number and entry.part is not None and previous.part is not None
    if same_message:
        if entry.part <= previous.part or entry.offset != previous.offset:  # type: ignore[operator]
            raise InvalidInput(f"inventory line {lineno}: sub-message {entry.number}.{entry.part} is out of order")
        return
    if entry.number != previous.number + 1:
        raise InvalidInput(
            f"inventory line {lineno}: message {entry.number} follows message {previous.number}; "
            "numbers must count up by one (is the inventory truncated or edited?)"
        )
    if entry.offset <= previous.offset:
        raise InvalidInput(f"inventory line {lineno}: offset {entry.offset} does not increase after {previous.offset}")


def select(entries: Iterable[IdxEntry], patterns: Sequence[str]) -> list[IdxEntry]:
    """Entries whose ``:VARIABLE:level:forecast:`` matches any regex in ``patterns``
    (``re.search``, like Herbie's ``searchString``), in file order."""
    if isinstance(patterns, str):
        raise InvalidInput("select() takes a list of patterns, not one string")
    try:
        compiled = [re.compile(p) for p in patterns]
    except re.error as exc:
        raise InvalidInput(f"bad inventory search pattern: {exc}") from exc
    return [e for e in entries if any(c.search(e.search_text) for c in compiled)]


def byte_ranges(
    entries: Sequence[IdxEntry], selected: Iterable[IdxEntry], *, file_size: int | None = None
) -> list[ByteRange]:
    """Inclusive byte range of each selected message, in file order, one per message.

    The last message of the file is open-ended ``(offset, None)`` unless
    ``file_size`` is given. Raises :class:`InvalidInput` if a selected entry is
    not one of ``entries`` or ``file_size`` does not reach past the last offset.
    """
    starts = sorted({e.offset for e in entries})
    following = dict(zip(starts, [*starts[1:], None], strict=True))
    if file_size is not None and starts and file_size <= starts[-1]:
        raise InvalidInput(f"file size {file_size} does not reach past the last message at byte {starts[-1]}")
    known = set(entries)
    ranges: dict[int, ByteRange] = {}
    for entry in selected:
        if entry not in known:
            raise InvalidInput(f"selected entry {entry.line!r} is not part of this inventory")
        end = following[entry.offset]
        last = end - 1 if end is not None else (file_size - 1 if file_size is not None else None)
        ranges[entry.offset] = (entry.offset, last)
    return [ranges[k] for k in sorted(ranges)]


def merge_adjacent(ranges: Iterable[ByteRange]) -> list[ByteRange]:
    """Sort ranges and merge those that touch or overlap; an open end absorbs what follows."""
    merged: list[ByteRange] = []
    for first, last in sorted(ranges, key=lambda r: r[0]):
        if first < 0 or (last is not None and last < first):
            raise InvalidInput(f"invalid byte range ({first}, {last})")
        if merged:
            prev_first, prev_last = merged[-1]
            if prev_last is None:
                continue
            if first <= prev_last + 1:
                merged[-1] = (prev_first, None if last is None else max(prev_last, last))
                continue
        merged.append((first, last))
    return merged


def expected_bytes(entries: Sequence[IdxEntry], selected: Iterable[IdxEntry], file_size: int) -> int:
    """How many bytes the selected messages take in a file of ``file_size`` bytes."""
    ranges = byte_ranges(entries, selected, file_size=file_size)
    return sum(last - first + 1 for first, last in ranges if last is not None)
