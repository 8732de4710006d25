"""Months as ``YYYY-MM`` strings: parse, check a requested range, list days."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta

from earthkeep.errors import InvalidInput

FIRST_MONTH = "2012-01"
"""VNP46A2 starts on 2012-01-19."""
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_month(text: str) -> tuple[int, int]:
    """``"2024-03"`` -> ``(2024, 3)``; anything else is :class:`InvalidInput`."""
    m = _MONTH.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise InvalidInput(f"month {text!r} is not of the form YYYY-MM")
    return int(m[1]), int(m[2])


def month_str(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def current_month(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return month_str(now.year, now.month)


def month_range(start: str, end: str, *, max_months: int = 120, now: datetime | None = None) -> list[str]:
    """Every month from ``start`` to ``end`` inclusive, after checking the range makes sense.

    Refused: an end before the start, a month that has not ended yet (its
    composite would be partial), a month before VNP46A2 begins, more than
    ``max_months`` months.
    """
    (y0, m0), (y1, m1) = parse_month(start), parse_month(end)
    if (y1, m1) < (y0, m0):
        raise InvalidInput(f"month range is reversed: end {end} is before start {start}")
    this = current_month(now)
    if month_str(y1, m1) >= this:
        raise InvalidInput(
            f"month {month_str(y1, m1)} has not ended yet (now is {this}); the last month that can be "
            f"processed is {previous_month(this)}"
        )
    if month_str(y0, m0) < FIRST_MONTH:
        raise InvalidInput(f"month {month_str(y0, m0)} is before Black Marble VNP46A2 begins ({FIRST_MONTH})")
    out = months_between(start, end)
    if len(out) > max_months:
        raise InvalidInput(f"{len(out)} months requested; at most {max_months} per request")
    return out


def months_between(start: str, end: str) -> list[str]:
    """Every month from ``start`` to ``end`` inclusive (no checks beyond the format)."""
    (y, m), (y1, m1) = parse_month(start), parse_month(end)
    out = []
    while (y, m) <= (y1, m1):
        out.append(month_str(y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def previous_month(month: str) -> str:
    y, m = parse_month(month)
    return month_str(y - 1, 12) if m == 1 else month_str(y, m - 1)


def days_of(month: str) -> list[date]:
    """Every day of ``month``."""
    y, m = parse_month(month)
    return [date(y, m, d) for d in range(1, calendar.monthrange(y, m)[1] + 1)]


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """Start (inclusive) and end (exclusive) of ``month`` in UTC."""
    days = days_of(month)
    start = datetime(days[0].year, days[0].month, 1, tzinfo=UTC)
    return start, datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
