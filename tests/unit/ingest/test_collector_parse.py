"""Request bodies: one object, an array, NDJSON with bad lines, limits."""

import pytest

from earthkeep.errors import InvalidInput
from earthkeep.ingest.collector import BatchTooLarge, Parsed, _merge, parse_body
from earthkeep.ingest.models import validate_records


def test_object_array_and_ndjson():
    assert parse_body(b'{"a": 1}', "application/json", max_records=5).records == [{"a": 1}]
    assert parse_body(b'[{"a": 1}, {"a": 2}]', None, max_records=5).records == [{"a": 1}, {"a": 2}]
    p = parse_body(b'{"a": 1}\n\n{"a": 2}\r\n', "application/x-ndjson; charset=utf-8", max_records=5)
    assert p.records == [{"a": 1}, {"a": 2}] and not p.errors


def test_malformed_ndjson_line_is_one_rejection_at_its_position():
    p = parse_body(b'{"a": 1}\n{nope\n{"a": 3}', "application/x-ndjson", max_records=5)
    assert p.total == 3 and [e.index for e in p.errors] == [1]
    assert "line 2: malformed JSON" in p.errors[0].reason


def test_malformed_json_and_wrong_top_level():
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_body(b"[{", "application/json", max_records=5)
    with pytest.raises(InvalidInput, match="JSON str"):
        parse_body(b'"x"', "application/json", max_records=5)


def test_too_many_records():
    with pytest.raises(BatchTooLarge, match="at most 2"):
        parse_body(b"[{}, {}, {}]", None, max_records=2)


def test_rejection_indexes_map_back_to_body_positions():
    rec = {"station_id": "S1", "timestamp": "2024-01-01T00:00:00Z", "temperature": 99.0}
    p = parse_body(b'{oops\n' + __import__("orjson").dumps(rec), "application/x-ndjson", max_records=5)
    good = [r for r in p.records if isinstance(r, dict)]
    _, bad = validate_records(good, known_station={"S1"})
    merged = _merge(p, bad)
    assert [r.index for r in merged] == [0, 1] and "99" in merged[1].reason
    assert isinstance(Parsed([]).total, int)
