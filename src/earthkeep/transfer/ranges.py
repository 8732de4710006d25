"""Byte ranges: merging, splitting, HTTP header formatting and parsing, coverage.

Two conventions meet here and the names say which one a function uses:

* a :data:`ByteRange` is HTTP's: ``(start, end)`` with ``end`` **inclusive**, or
  ``None`` for "to the end of the file" (``bytes=start-``);
* :class:`Coverage` and :class:`Span` work on **half-open** offsets
  ``[start, stop)``, which is what file offsets and lengths add up to.

Everything in this module is pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from earthkeep.errors import InvalidInput

ByteRange = tuple[int, int | None]
"""``(start, end)``: inclusive byte offsets; ``end=None`` means to the end of the file."""

MIB = 1 << 20
DEFAULT_MIN_SEGMENT = MIB

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)


def check_range(r: ByteRange) -> ByteRange:
    """Return ``r`` as a tuple of ints, or raise :class:`InvalidInput` when it is malformed."""
    try:
        start, end = r
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"byte range {r!r} is not a (start, end) pair") from exc
    if not isinstance(start, int) or start < 0:
        raise InvalidInput(f"byte range {r!r}: start must be an integer >= 0")
    if end is not None and (not isinstance(end, int) or end < start):
        raise InvalidInput(f"byte range {r!r}: end must be None or an integer >= start")
    return (start, end)


def merge_ranges(ranges: Iterable[ByteRange], gap: int = 0) -> list[ByteRange]:
    """Sort ``ranges`` and merge those that overlap, touch, or lie at most ``gap`` bytes apart.

    ``[(0, 9), (10, 19)]`` becomes ``[(0, 19)]``; with ``gap=5``, ``(0, 9)`` and
    ``(15, 20)`` merge too (the 5 bytes between them are fetched and thrown away).
    An open-ended range absorbs every range that starts inside or after it.
    """
    if gap < 0:
        raise InvalidInput("gap must be >= 0")
    ordered = sorted((check_range(r) for r in ranges), key=lambda r: r[0])
    merged: list[ByteRange] = []
    for start, end in ordered:
        if merged:
            last_start, last_end = merged[-1]
            if last_end is None:
                continue
            if start <= last_end + 1 + gap:
                new_end = None if end is None else max(end, last_end)
                merged[-1] = (last_start, new_end)
                continue
        merged.append((start, end))
    return merged


def split_segments(
    size: int, n: int, *, min_segment: int = DEFAULT_MIN_SEGMENT, start: int = 0
) -> list[tuple[int, int]]:
    """Split ``size`` bytes starting at ``start`` into at most ``n`` near-equal inclusive ranges.

    No segment is smaller than ``min_segment`` unless the whole is; ``size=0``
    gives ``[]``. The segments are contiguous and in order, and the first ones
    are one byte longer when ``size`` does not divide evenly.
    """
    if size < 0 or n < 1 or min_segment < 1:
        raise InvalidInput("split_segments needs size >= 0, n >= 1 and min_segment >= 1")
    if size == 0:
        return []
    count = max(1, min(n, size // min_segment))
    base, extra = divmod(size, count)
    out: list[tuple[int, int]] = []
    pos = start
    for i in range(count):
        length = base + (1 if i < extra else 0)
        out.append((pos, pos + length - 1))
        pos += length
    return out


def format_range(ranges: Sequence[ByteRange]) -> str:
    """Format the value of a ``Range`` request header: ``bytes=0-99,200-``."""
    if not ranges:
        raise InvalidInput("a Range header needs at least one byte range")
    parts = []
    for r in ranges:
        start, end = check_range(r)
        parts.append(f"{start}-" if end is None else f"{start}-{end}")
    return "bytes=" + ",".join(parts)


@dataclass(frozen=True)
class ContentRange:
    """A parsed ``Content-Range`` header: inclusive ``start``/``end``, ``total`` when known.

    ``start`` and ``end`` are ``None`` in the ``bytes */total`` form a server
    sends with ``416 Range Not Satisfiable``.
    """

    start: int | None
    end: int | None
    total: int | None

    @property
    def length(self) -> int:
        """Number of bytes in the range (0 for the unsatisfied form)."""
        if self.start is None or self.end is None:
            return 0
        return self.end - self.start + 1


def parse_content_range(value: str) -> ContentRange:
    """Parse ``bytes 0-99/1000``, ``bytes 0-99/*`` or ``bytes */1000``.

    Raises :class:`InvalidInput` for anything else (other units, ``end < start``,
    ``end`` beyond a known total, or the meaningless ``bytes */*``).
    """
    m = _CONTENT_RANGE.match(value or "")
    if m is None:
        raise InvalidInput(f"malformed Content-Range header {value!r}")
    first, last, total_txt = m.groups()
    total = None if total_txt == "*" else int(total_txt)
    if first is None:
        if total is None:
            raise InvalidInput(f"malformed Content-Range header {value!r}")
        return ContentRange(None, None, total)
    start, end = int(first), int(last)
    if end < start or (total is not None and end >= total):
        raise InvalidInput(f"inconsistent Content-Range header {value!r}")
    return ContentRange(start, end, total)


@dataclass(frozen=True)
class Span:
    """``length`` bytes read from offset ``src`` of the remote and written at ``dst`` locally.

    ``length=None`` means "until the remote ends" (a single stream of unknown size).
    """

    src: int
    dst: int
    length: int | None

    @property
    def src_stop(self) -> int | None:
        """Half-open end of the span on the remote side."""
        return None if self.length is None else self.src + self.length


def layout(ranges: Sequence[ByteRange] | None, size: int | None) -> list[Span]:
    """Where each requested range lands in the output file: their concatenation, in order.

    Without ``ranges`` the output is the whole remote (one span, ``size`` may be
    ``None``). Open-ended ranges need ``size``; like HTTP servers, an ``end``
    past the last byte is clamped to it. A range starting at or after ``size``
    raises :class:`InvalidInput`.
    """
    if not ranges:
        return [Span(0, 0, size)]
    spans: list[Span] = []
    dst = 0
    for r in ranges:
        start, end = check_range(r)
        if size is None and end is None:
            raise InvalidInput(f"open-ended range {r!r} needs the remote size, which is unknown")
        if size is not None:
            if start >= size:
                raise InvalidInput(f"byte range {r!r} starts past the end of the remote ({size} bytes)")
            end = size - 1 if end is None else min(end, size - 1)
        assert end is not None
        spans.append(Span(start, dst, end - start + 1))
        dst += end - start + 1
    return spans


class Coverage:
    """A set of half-open intervals ``[start, stop)``: which bytes are already on disk."""

    def __init__(self, intervals: Iterable[tuple[int, int]] = ()) -> None:
        self._iv: list[tuple[int, int]] = []
        for start, stop in intervals:
            self.add(start, stop)

    def add(self, start: int, stop: int) -> None:
        """Mark ``[start, stop)`` as covered, merging with touching intervals."""
        if stop <= start:
            return
        kept: list[tuple[int, int]] = []
        for a, b in self._iv:
            if b < start or a > stop:
                kept.append((a, b))
            else:
                start, stop = min(a, start), max(b, stop)
        kept.append((start, stop))
        kept.sort()
        self._iv = kept

    def prefix(self) -> int:
        """Length of the covered run that starts at offset 0."""
        if self._iv and self._iv[0][0] == 0:
            return self._iv[0][1]
        return 0

    def total(self) -> int:
        """Number of covered bytes."""
        return sum(b - a for a, b in self._iv)

    def missing(self, start: int, stop: int) -> Iterator[tuple[int, int]]:
        """Yield the uncovered half-open pieces of ``[start, stop)``, in order."""
        pos = start
        for a, b in self._iv:
            if b <= pos:
                continue
            if a >= stop:
                break
            if a > pos:
                yield (pos, a)
            pos = max(pos, b)
        if pos < stop:
            yield (pos, stop)

    def covers(self, start: int, stop: int) -> bool:
        """True when every byte of ``[start, stop)`` is covered."""
        return next(self.missing(start, stop), None) is None

    def intervals(self) -> list[tuple[int, int]]:
        """The covered intervals, sorted and disjoint."""
        return list(self._iv)
