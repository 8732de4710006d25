"""STAC search parameters: RFC 3339 datetimes (the validator's own cases), limits, sortby, fields."""

from datetime import UTC, datetime

import pytest
from stac_api_validator.validations import invalid_datetimes, valid_datetimes
from starlette.datastructures import QueryParams

from earthkeep.api.stac_params import MAX_LIMIT, from_body, from_query, parse_datetime, parse_limit
from earthkeep.catalog.stac import Fields
from earthkeep.errors import InvalidInput


@pytest.mark.parametrize("text", valid_datetimes)
def test_valid_rfc3339_datetimes_are_accepted(text):
    start, end = parse_datetime(text)
    assert start is not None or end is not None
    assert all(t is None or t.tzinfo is UTC for t in (start, end))


@pytest.mark.parametrize("text", invalid_datetimes)
def test_invalid_datetimes_are_refused_naming_the_parameter(text):
    with pytest.raises(InvalidInput, match=r"^datetime: "):
        parse_datetime(text)


def test_zones_and_fractions_are_read_exactly():
    assert parse_datetime("1996-12-19T16:39:57-08:00")[0] == datetime(1996, 12, 20, 0, 39, 57, tzinfo=UTC)
    assert parse_datetime("2020-07-23T00:00:00.012345678Z")[0] == datetime(2020, 7, 23, 0, 0, 0, 12345, tzinfo=UTC)
    assert parse_datetime("2020-07-23T00:00:00Z/..") == (datetime(2020, 7, 23, tzinfo=UTC), None)


def test_limit_is_capped_never_refused_when_large():
    assert parse_limit("10000") == MAX_LIMIT and parse_limit(5) == 5
    for bad in ("0", -1, "x", True, 1.5):
        with pytest.raises(InvalidInput, match=r"^limit: "):
            parse_limit(bad)


def test_sortby_and_fields_in_both_forms():
    q = from_query(QueryParams("sortby=-properties.datetime, id&fields=id,-properties.x,+bbox"))
    assert q.sortby == [("datetime", True), ("id", False)]
    assert q.fields == Fields(("id", "bbox"), ("properties.x",))
    assert from_query(QueryParams("fields=-geometry")).fields == Fields(None, ("geometry",))  # all, less geometry
    assert from_query(QueryParams("fields=")).fields == Fields((), ())  # the defaults
    b = from_body({"sortby": [{"field": "collection", "direction": "desc"}, {"field": "id"}],
                   "fields": {"include": ["id"], "exclude": None}})
    assert b.sortby == [("collection", True), ("id", False)] and b.fields == Fields(("id",), ())
    assert from_body({"fields": {"exclude": ["geometry"]}}).fields == Fields(None, ("geometry",))
    assert from_body({"fields": {"include": None, "exclude": ["geometry"]}}).fields == Fields((), ("geometry",))
    assert from_body({"collections": "a,b"}).collections == ("a", "b")


def test_unknown_parameters_are_named():
    with pytest.raises(InvalidInput, match=r"^prev, query: unsupported"):
        from_query(QueryParams("query=x&prev=y&limit=1"))
    with pytest.raises(InvalidInput, match=r"^conf: unsupported"):
        from_body({"conf": {}})
