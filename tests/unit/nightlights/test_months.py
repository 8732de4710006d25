"""Month ranges: reversed, unfinished, too early or too long ranges are refused."""

from datetime import UTC, datetime

import pytest

from earthkeep.errors import InvalidInput
from earthkeep.nightlights.months import days_of, month_bounds, month_range, months_between, parse_month

NOW = datetime(2025, 3, 15, tzinfo=UTC)


def test_inclusive_range_across_a_year():
    assert month_range("2024-11", "2025-02", now=NOW) == ["2024-11", "2024-12", "2025-01", "2025-02"]
    assert months_between("2024-12", "2024-12") == ["2024-12"]


def test_reversed_range_is_refused():
    with pytest.raises(InvalidInput, match=r"reversed: end 2024-01 is before start 2024-03"):
        month_range("2024-03", "2024-01", now=NOW)


@pytest.mark.parametrize("end", ["2025-03", "2025-04", "2031-01"])
def test_months_that_have_not_ended_are_refused(end):
    with pytest.raises(InvalidInput, match=r"has not ended yet .*last month that can be processed is 2025-02"):
        month_range("2025-01", end, now=NOW)


def test_months_before_the_product_and_too_many_months_are_refused():
    with pytest.raises(InvalidInput, match=r"before Black Marble VNP46A2 begins"):
        month_range("2011-12", "2012-02", now=NOW)
    with pytest.raises(InvalidInput, match=r"13 months requested; at most 12"):
        month_range("2023-01", "2024-01", max_months=12, now=NOW)


@pytest.mark.parametrize("text", ["2024-13", "2024-1", "24-01", "2024/01", ""])
def test_bad_month_text_is_refused(text):
    with pytest.raises(InvalidInput, match=r"not of the form YYYY-MM"):
        parse_month(text)


def test_days_and_bounds():
    assert len(days_of("2024-02")) == 29 and len(days_of("2023-02")) == 28
    start, end = month_bounds("2024-12")
    assert start == datetime(2024, 12, 1, tzinfo=UTC) and end == datetime(2025, 1, 1, tzinfo=UTC)
