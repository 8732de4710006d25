"""Broker message bodies: the rows format round-trips, and a consumer is defensive about both formats."""

from datetime import UTC, datetime, timedelta, timezone

import orjson

from earthkeep.ingest.messages import FORMAT_HEADER, ROWS_FORMAT, decode_message, encode_rows
from earthkeep.ingest.models import Obs

ROWS = {FORMAT_HEADER: ROWS_FORMAT}
T = datetime(2024, 3, 1, 12, tzinfo=UTC)


def test_rows_round_trip_with_nulls_microseconds_and_utc():
    rows = [Obs("KSEA", T, 11.2, 81.0, 1012.4, 3.1, 200.0, 0.2),
            Obs("KSEA", T + timedelta(microseconds=5), None, 40, None, None, None, None),
            Obs("B1_0001", T, -90.0, 0.0, 300.0, 0.0, 360.0, 500.0)]
    body = encode_rows(rows)
    assert body.startswith(b'[["KSEA","2024-03-01T12:00:00Z",11.2,81.0,1012.4,3.1,200.0,0.2],')
    good, bad, seen = decode_message(body, ROWS)
    assert (good, bad, seen) == (rows, [], 3)
    assert all(type(r) is Obs and r.ts.tzinfo is UTC for r in good)


def test_the_same_rows_always_give_the_same_bytes():
    a = Obs("S1", T, 1.5)
    b = Obs("S1", T.astimezone(timezone(timedelta(hours=2))).astimezone(UTC), 1.5)
    assert encode_rows([a, a]) == encode_rows([b, b])


def test_a_bad_row_is_refused_with_its_reason_and_the_rest_is_kept():
    body = orjson.dumps([
        ["S1", "2024-03-01T12:00:00Z", 12.0, None, None, None, None, None],
        ["S1", "2024-03-01T12:01:00Z", 75.0, None, None, None, None, None],  # out of range
        ["has space", "2024-03-01T12:02:00Z", 1.0, None, None, None, None, None],
        ["S1", "2024-03-01T12:03:00Z", None, None, None, None, None, None],  # no measure
        ["S1", "2024-03-01T12:04:00", 2.0, None, None, None, None, None],  # naive: UTC, as the API takes it
        ["S1", "2024-03-01T12:05:00Z", 1.0],  # wrong arity
    ])
    good, bad, seen = decode_message(body, ROWS)
    assert seen == 6
    assert [(r.ts.minute, r.temperature) for r in good] == [(0, 12.0), (4, 2.0)]
    assert good[1].ts.tzinfo is UTC
    reasons = {b.index: b.reason for b in bad}
    assert sorted(reasons) == [1, 2, 3, 5]
    assert "temperature" in reasons[1] and "pattern" in reasons[2] and "no measurement" in reasons[3]
    assert "expected a JSON object, got array" in reasons[5]


def test_rows_that_decode_but_break_unchecked_rules_go_the_careful_way():
    good, bad, _ = decode_message(encode_rows([Obs("S1", T, 1.0), Obs("S 1", T, 1.0), Obs("S2", T)]), ROWS)
    assert good == [Obs("S1", T, 1.0)] and [b.index for b in bad] == [1, 2]


def test_a_message_that_is_not_rows_is_one_rejection_not_a_crash():
    for body, words in ((b"{nope", "not JSON"), (b'{"a": 1}', "not a JSON array"), (b"", "not JSON")):
        good, bad, seen = decode_message(body, ROWS)
        assert not good and seen == 1 and words in bad[0].reason, body


def test_ndjson_messages_without_the_header_are_still_read():
    lines = [orjson.dumps({"station_id": "S1", "timestamp": "2024-03-01T12:00:00+01:00", "humidity": 50}),
             orjson.dumps({"station_id": "S1", "timestamp": "2024-03-01T12:01:00Z", "humidity": 500})]
    good, bad, seen = decode_message(b"\n".join(lines), {})
    assert seen == 2 and good == [Obs("S1", T - timedelta(hours=1), None, 50.0)]
    assert bad[0].index == 1 and "humidity" in bad[0].reason
