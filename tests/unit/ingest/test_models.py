"""Observation validation: ranges, types, time zones, and the fast path agreeing with the model."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from earthkeep.ingest.models import MEASURES, Observation, _fast, dedupe_key, validate_records
from earthkeep.ingest.simulator import Simulator, make_stations

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


def rec(**kw):
    return {"station_id": "S1", "timestamp": "2024-06-01T10:00:00Z", "temperature": 12.5} | kw


def check(*records):
    return validate_records(list(records), known_station={"S1"}, now=NOW)


def test_ranges_are_enforced_at_both_ends():
    for name, (_, lo, hi) in MEASURES.items():
        good, bad = check(rec(**{name: lo}), rec(**{name: hi}), rec(**{name: lo - 0.1}), rec(**{name: hi + 0.1}))
        assert len(good) == 2 and [b.index for b in bad] == [2, 3], name
        assert name in bad[0].reason


def test_naive_timestamps_are_utc_and_offsets_are_converted():
    (a, b), _ = check(rec(timestamp="2024-06-01T10:00:00"), rec(timestamp="2024-06-01T12:00:00+02:00"))
    assert a.ts == b.ts == datetime(2024, 6, 1, 10, tzinfo=UTC)
    assert a.key == b.key == "S1|2024-06-01T10:00:00.000000Z"


def test_future_tolerance_is_five_minutes():
    ok = rec(timestamp=(NOW + timedelta(minutes=4)).isoformat())
    late = rec(timestamp=(NOW + timedelta(minutes=6)).isoformat())
    good, bad = check(ok, late)
    assert len(good) == 1 and "in the future" in bad[0].reason


def test_wrong_types_and_shapes_have_clear_reasons():
    _, bad = check(rec(temperature="12"), rec(temperature=None, humidity=None), rec(station_id=7),
                   rec(extra=1), [1, 2], None, rec(station_id="has space"), rec(timestamp="yesterday"))
    reasons = [b.reason for b in bad]
    assert "temperature: Input should be a valid number (got '12')" in reasons[0]
    assert "no measurement given" in reasons[1]
    assert "station_id: Input should be a valid string" in reasons[2]
    assert "extra: Extra inputs are not permitted" in reasons[3]
    assert reasons[4] == "expected a JSON object, got array"
    assert reasons[5] == "expected a JSON object, got null"
    assert "station_id: String should match pattern" in reasons[6]
    assert "timestamp:" in reasons[7]


def test_unknown_station_is_refused():
    _, bad = check(rec(station_id="S2"))
    assert "unknown station 'S2'" in bad[0].reason and bad[0].station_id == "S2"


def _slow_accepts(raw):
    try:
        Observation.model_validate(raw)
    except Exception:
        return False
    return True


def test_fast_path_never_accepts_what_the_model_refuses():
    rng = random.Random(4)
    sim = Simulator(make_stations(3), NOW - timedelta(days=1), invalid_rate=0.3, duplicate_rate=0.1)
    mutations = [lambda r: r, lambda r: r | {"temperature": rng.choice([1, 1.5, -90, 60.0001, True, "1"])},
                 lambda r: r | {"timestamp": rng.choice(["2024-06-01", "2024-06-01T00:00:00+0100", "20240601T000000",
                                                         "2024-06-01T00:00:00.123456789Z", "2024-06-01 00:00"])},
                 lambda r: r | {"station_id": rng.choice(["ok", "S1\n", "-x", "a" * 65, "é"])},
                 lambda r: {k: v for k, v in r.items() if k != "humidity"}]
    for raw in sim.batch(3000):
        mutated = rng.choice(mutations)(dict(raw))
        fast = _fast(mutated)
        if fast is not None:
            assert _slow_accepts(mutated), mutated
            assert fast == Observation.model_validate(mutated).row()


def test_dedupe_key_is_stable_across_representations():
    t = datetime(2024, 1, 1, 1, tzinfo=UTC)
    assert dedupe_key("A", t) == dedupe_key("A", t.astimezone(datetime.now().astimezone().tzinfo))


def _mutations(rng):
    return [
        lambda r: r,
        lambda r: r | {"temperature": rng.choice([1, 1.5, -90, 60, 60.0001, -90.5, True, "1", None, [1], 1e300])},
        lambda r: r | {"humidity": rng.choice([0, 100, 100.0000001, -0.0, False, {"v": 1}])},
        lambda r: r | {"timestamp": rng.choice(["2024-06-01", "2024-06-01T00:00:00+0100", "20240601T000000",
                                                 "2024-06-01T00:00:00.123456789Z", "2024-06-01 00:00",
                                                 "2024-06-01T00:00:00z", "2024-06-01T24:00:00Z", "", 17e8,
                                                 "2024-06-01T00:00:00+01:00", "2024-06-01T00:00:00.5"])},
        lambda r: r | {"station_id": rng.choice(["ok", "S1\n", "-x", "a" * 64, "a" * 65, "é", 7, "A:b.c-d_e"])},
        lambda r: {k: v for k, v in r.items() if k != rng.choice(["humidity", "station_id", "timestamp"])},
        lambda r: {k: v for k, v in r.items() if k in ("station_id", "timestamp")},  # no measure at all
        lambda r: r | {"extra": 1},
    ]


def test_decoding_lines_accepts_exactly_what_the_objects_path_accepts():
    import orjson

    from earthkeep.ingest.models import Wire, check_records, parse_line

    rng = random.Random(5)
    sim = Simulator(make_stations(3), NOW - timedelta(days=1), invalid_rate=0.3, duplicate_rate=0.1)
    mutations = _mutations(rng)
    wires = 0
    for raw in sim.batch(3000):
        mutated = rng.choice(mutations)(dict(raw))
        line = orjson.dumps(mutated)
        parsed = parse_line(line)
        wires += type(parsed) is Wire
        by_line = check_records([parsed], known_station=lambda _: True, now=NOW)
        by_obj = check_records([orjson.loads(line)], known_station=lambda _: True, now=NOW)
        assert by_line.good == by_obj.good, line
        assert [b.reason for b in by_line.bad] == [b.reason for b in by_obj.bad], line
    assert wires > 1000  # the fast path was exercised


def test_malformed_line_is_rejected_with_its_reason():
    from earthkeep.ingest.models import check_records, parse_line

    checked = check_records([parse_line(b"{nope"), parse_line(b'"text"')], known_station=lambda _: True, now=NOW)
    assert not checked.good and [b.index for b in checked.bad] == [0, 1]
    assert "malformed JSON" in checked.bad[0].reason and "expected a JSON object" in checked.bad[1].reason


def test_parse_lines_decodes_a_clean_body_at_once_and_a_mixed_one_line_by_line():
    import orjson

    from earthkeep.ingest.models import Malformed, Wire, ndjson_lines, parse_line, parse_lines

    good = [orjson.dumps(rec(timestamp=f"2024-06-01T10:0{i}:00Z")) for i in range(3)]
    body = good[0] + b"\n\n  \r\n" + good[1] + b"\r\n" + good[2]
    records = parse_lines(body)
    assert ndjson_lines(body) == good and all(type(r) is Wire for r in records)
    assert records == [parse_line(line) for line in good]
    mixed = good[0] + b"\n{nope\n" + orjson.dumps(rec(temperature=99.0))
    records = parse_lines(mixed)
    assert len(records) == 3
    assert type(records[0]) is Wire and type(records[1]) is Malformed and records[2]["temperature"] == 99.0


@pytest.mark.parametrize("errors_name_the_line", [True, False])
def test_a_large_body_with_scattered_bad_lines_parses_exactly_as_line_by_line(errors_name_the_line, monkeypatch):
    import re

    import orjson

    from earthkeep.ingest import models
    from earthkeep.ingest.models import parse_line, parse_lines

    if not errors_name_the_line:  # as if msgspec's messages changed: decoding in halves finds the lines
        monkeypatch.setattr(models, "_AT_LINE", re.compile(r"(?!)"))

    rng = random.Random(8)
    sim = Simulator(make_stations(5), NOW - timedelta(days=2), invalid_rate=0.01)
    mutations = _mutations(rng)
    for bad_share in (0.0, 0.003, 0.05, 0.5, 1.0):
        lines = []
        for raw in sim.batch(1000):
            lines.append(orjson.dumps(rng.choice(mutations[1:])(dict(raw)) if rng.random() < bad_share else raw))
        if bad_share == 0.05:
            lines[17] = b"{not json"
            lines[-1] = b"[1, 2"
        body = b"\n".join(lines) + b"\n\n"
        assert parse_lines(body) == [parse_line(line) for line in lines], bad_share


def test_timestamps_that_overflow_in_utc_are_refused_not_raised():
    import orjson

    from earthkeep.ingest.models import check_records, parse_line

    for stamp in ("0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"):
        for record in (rec(timestamp=stamp), parse_line(orjson.dumps(rec(timestamp=stamp)))):
            checked = check_records([record], known_station={"S1"}, now=NOW)
            assert not checked.good and "outside the years 1 to 9999" in checked.bad[0].reason, stamp


def test_a_station_id_is_checked_against_its_pattern_on_the_fast_path_too():
    import orjson

    from earthkeep.ingest.models import Wire, check_records, parse_line

    parsed = [parse_line(orjson.dumps(rec(station_id=sid))) for sid in ("S1", "has space", "S1\n", "é")]
    assert all(type(p) is Wire for p in parsed)  # msgspec no longer checks the pattern itself
    checked = check_records(parsed, known_station=lambda _: True, now=NOW)
    assert [o.station_id for o in checked.good] == ["S1"]
    assert [b.index for b in checked.bad] == [1, 2, 3]
    assert all("station_id: String should match pattern" in b.reason for b in checked.bad)
