"""The ``fetch`` job's payload: what is accepted, and where the download is kept and catalogued."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine

from earthkeep.errors import InvalidInput, UnsafePath
from earthkeep.jobs.fetch import parse_payload, target_key
from earthkeep.jobs.queue import MAX_BACKOFF_S, JobQueue


def test_defaults_name_the_item_after_the_file_of_the_url():
    p = parse_payload({"url": "http://127.0.0.1:9/data/gfs.t00z.f003.grib2?signature=abc"})
    assert (p.collection, p.item_id, p.key, p.properties) == ("downloads", None, None, {})
    assert target_key(p) == ("gfs.t00z.f003.grib2", "downloads/gfs.t00z.f003.grib2/gfs.t00z.f003.grib2")


def test_a_url_without_a_file_name_is_a_download():
    assert target_key(parse_payload({"url": "http://127.0.0.1:9/"})) == ("download", "downloads/download/download")


def test_the_item_id_and_key_given_are_kept():
    p = parse_payload({"url": "http://127.0.0.1:9/a.nc", "collection": "cmems", "item_id": "day-1",
                       "key": "forcing/cmems/day-1.nc"})
    assert target_key(p) == ("day-1", "forcing/cmems/day-1.nc")
    assert target_key(parse_payload({"url": "http://127.0.0.1:9/a.nc", "item_id": "x"})) == ("x", "downloads/x/a.nc")


@pytest.mark.parametrize("payload", [
    {"url": "http://127.0.0.1:9/a", "key": "../../etc/passwd"},
    {"url": "http://127.0.0.1:9/a", "key": "/abs/path"},
    {"url": "http://127.0.0.1:9/a", "item_id": "../../escape"},
    {"url": "http://127.0.0.1:9/a", "item_id": "back\\slash"},
])
def test_keys_that_would_leave_the_store_are_refused(payload):
    with pytest.raises(UnsafePath):
        target_key(parse_payload(payload))


@pytest.mark.parametrize(("payload", "field"), [
    ({}, "url: Field required"),
    ({"url": "http://x/a", "collection": "../up"}, "collection: String should match pattern"),
    ({"url": "http://x/a", "collection": ""}, "collection: String should match pattern"),
    ({"url": "http://x/a", "size": -1}, "size: Input should be greater than or equal to 0"),
    ({"url": "http://x/a", "sha256": "abc"}, "sha256: String should match pattern"),
    ({"url": "http://x/a", "md5": "z" * 32}, "md5: String should match pattern"),
    ({"url": "http://x/a", "start": "yesterday"}, "start: Input should be a valid datetime"),
    ({"url": "http://x/a", "item_id": "i" * 301}, "item_id: String should have at most 300 characters"),
])
def test_a_bad_payload_names_the_first_bad_field(payload, field):
    with pytest.raises(InvalidInput, match=f"^fetch job: {field}"):
        parse_payload(payload)


def test_aware_times_are_kept():
    p = parse_payload({"url": "http://x/a", "start": "2024-01-01T06:00:00+02:00"})
    assert p.start == datetime(2024, 1, 1, 4, tzinfo=UTC)


def test_a_naive_time_is_refused_before_queueing_or_read_as_utc():
    try:
        p = parse_payload({"url": "http://x/a", "start": "2024-01-01T00:00:00"})
    except InvalidInput:
        return
    assert p.start is not None and p.start.tzinfo is not None


def test_retry_delays_double_with_a_fifth_of_jitter_and_stop_at_an_hour():
    queue = JobQueue(create_engine("sqlite://"), backoff_base_s=5.0)  # nothing connects for backoff
    for attempts, nominal in ((0, 5.0), (1, 5.0), (2, 10.0), (4, 40.0), (30, MAX_BACKOFF_S)):
        delays = [queue.backoff(attempts) for _ in range(50)]
        assert all(0.8 * nominal <= d <= 1.2 * nominal for d in delays), (attempts, min(delays), max(delays))
        assert len(set(delays)) > 1  # jittered
