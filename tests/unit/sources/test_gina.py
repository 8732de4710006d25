"""VIIRS SDR names (format <-> parse), hostile names and listing entries, search parameters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from earthkeep.errors import InvalidInput, UnsafePath
from earthkeep.sources.gina import (
    BY_ORIG,
    PLATFORMS,
    SdrName,
    Selection,
    check_selection,
    parse_listing,
    parse_sdr_name,
    search_params,
    search_url,
    store_key,
    transfer_request,
    wanted,
)
from earthkeep.testbed.gina import hostile_entries

README = "SVM16_npp_d20190422_t1828348_e1829590_b38780_c20190422183926285541_cspp_dev.h5"
BASE = "http://127.0.0.1:8123/products.json"


def test_readme_name_parses_to_the_readme_message_values():
    sdr = parse_sdr_name(README)
    assert sdr.segment == "SVM16"
    assert sdr.orig_platform_name == "npp" and sdr.platform_name == "Suomi-NPP"
    assert sdr.start_time == datetime(2019, 4, 22, 18, 28, 34, 800000)
    assert sdr.end_time == datetime(2019, 4, 22, 18, 29, 59)
    assert sdr.orbit_number == 38780
    assert sdr.proctime == datetime(2019, 4, 22, 18, 39, 26, 285541)
    assert sdr.format() == README


def test_granule_crossing_midnight_ends_the_next_day():
    sdr = parse_sdr_name("GMTCO_j01_d20240101_t2359100_e0000350_b31000_c20240102001000000000_cspp_dev.h5")
    assert sdr.end_time == datetime(2024, 1, 2, 0, 0, 35)
    assert sdr.platform_name == "NOAA-20"
    assert sdr.format().startswith("GMTCO_j01_d20240101_t2359100_e0000350")


def test_format_then_parse_round_trips():
    sdr = SdrName("SVI05", "j02", datetime(2025, 3, 1, 1, 2, 3, 400000), datetime(2025, 3, 1, 1, 3, 28, 600000),
                  123456, datetime(2025, 3, 1, 1, 12, 0, 1), "noaa_ops")
    assert parse_sdr_name(sdr.format()) == sdr


@pytest.mark.parametrize("name", ["../" + README, "/etc/" + README, README + "\x00", "..", "a/b.h5",
                                  "..\\" + README, "\x00" + README])
def test_hostile_names_are_unsafe(name):
    with pytest.raises(UnsafePath):
        parse_sdr_name(name)


@pytest.mark.parametrize("name", ["evil.sh", README.replace(".h5", ".h5.sh"), README.replace("d2019", "dXXXX"),
                                  README.replace("t1828348", "t2599999"), "", README.upper()])
def test_names_not_matching_the_pattern_are_refused(name):
    with pytest.raises((InvalidInput, UnsafePath)):
        parse_sdr_name(name)


def test_every_hostile_listing_entry_is_refused_and_good_ones_kept():
    good = {"url": f"http://127.0.0.1:8123/products/gilmore/{README}", "md5sum": "a" * 32, "size": 5}
    ok, refused = parse_listing([good, *hostile_entries("http://127.0.0.1:8123", "gilmore")], BASE)
    assert [g.name for g in ok] == [README]
    assert len(refused) == len(hostile_entries("http://127.0.0.1:8123", "gilmore"))


def test_listing_must_be_a_list():
    with pytest.raises(InvalidInput):
        parse_listing({"error": "x"}, BASE)


def test_search_params_carry_the_selection():
    sel = Selection("uafgina", ("snpp",), ("SVM16",), 2)
    params = dict(search_params(sel, "snpp", datetime(2024, 5, 10, 12, tzinfo=UTC)))
    assert params["start_date"] == "2024-05-08" and params["end_date"] == "2024-05-11"
    assert params["facilities[]"] == "uafgina" and params["satellites[]"] == "snpp"
    assert params["sensors[]"] == "viirs" and params["processing_levels[]"] == "level1"


def test_wanted_filters_segments_platforms_and_skips_catalogued():
    other = README.replace("SVM16", "SVM05")
    geo = README.replace("SVM16", "GMTCO")
    ok, _ = parse_listing([{"url": f"http://127.0.0.1:8123/p/{n}", "md5sum": "b" * 32} for n in (README, other, geo)],
                          BASE)
    todo = wanted(ok, ["SVM16", "GMTCO"], ["npp"], skip={README})
    assert [g.name for g in todo] == [geo]


def test_transfer_request_verifies_md5_and_size_and_keys_by_date():
    ok, _ = parse_listing([{"url": f"http://127.0.0.1:8123/p/{README}", "md5sum": "C" * 32, "size": 42}], BASE)
    req = transfer_request(ok[0])
    assert (req.md5, req.size) == ("c" * 32, 42)
    assert req.key == store_key(ok[0].sdr) == f"viirs/sdr/2019/04/22/{README}"


# ------------------------------------------------------------- the provider as data


def test_each_platform_has_its_four_names_and_is_found_by_its_file_name() -> None:
    assert [(p.gina, p.orig, p.name, p.tle) for p in PLATFORMS.values()] == [
        ("snpp", "npp", "Suomi-NPP", "SUOMI NPP"),
        ("noaa20", "j01", "NOAA-20", "NOAA 20"),
        ("noaa21", "j02", "NOAA-21", "NOAA 21"),
    ]
    assert {orig: p.gina for orig, p in BY_ORIG.items()} == {"npp": "snpp", "j01": "noaa20", "j02": "noaa21"}


def test_a_platform_the_table_does_not_know_keeps_its_file_name() -> None:
    sdr = parse_sdr_name(README.replace("_npp_", "_n99_"))
    assert sdr.platform is None and sdr.platform_name == "n99"


def test_the_file_name_keeps_tenths_of_a_second_and_the_microseconds_of_creation() -> None:
    sdr = SdrName("GDNBO", "j01", datetime(2024, 6, 1, 0, 0, 0, 900000), datetime(2024, 6, 1, 0, 1, 25, 0),
                  7, datetime(2024, 6, 1, 0, 10, 0, 42), "noaa_ops")
    assert sdr.format() == "GDNBO_j01_d20240601_t0000009_e0001250_b00007_c20240601001000000042_noaa_ops.h5"
    assert parse_sdr_name(sdr.format()) == sdr


def test_six_digit_orbits_parse_and_format_unpadded() -> None:
    name = README.replace("_b38780_", "_b123456_")
    assert parse_sdr_name(name).orbit_number == 123456
    assert parse_sdr_name(name).format() == name


def test_store_keys_follow_the_start_date_not_the_end_date() -> None:
    sdr = parse_sdr_name("GMTCO_j01_d20240101_t2359100_e0000350_b31000_c20240102001000000000_cspp_dev.h5")
    assert store_key(sdr) == f"viirs/sdr/2024/01/01/{sdr.format()}"


def test_a_selection_names_its_lock_the_same_whatever_the_order() -> None:
    a = Selection("gilmore", ("noaa20", "snpp"), ("SVM16", "GMTCO"), 1)
    b = Selection("gilmore", ("snpp", "noaa20"), ("GMTCO", "SVM16"), 3)
    assert a.lock_name() == b.lock_name() == "gina:gilmore:noaa20,snpp:GMTCO,SVM16"
    assert check_selection(a) is a


def test_a_bad_selection_lists_what_is_valid() -> None:
    with pytest.raises(InvalidInput, match="expected one of gilmore, uafgina"):
        check_selection(Selection("fairbanks", ("snpp",), ("SVM16",), 1))
    with pytest.raises(InvalidInput, match=r"unknown platforms \['metop'\]; known: snpp, noaa20, noaa21"):
        check_selection(Selection("gilmore", ("snpp", "metop"), ("SVM16",), 1))


def test_search_params_are_the_fixed_query_then_the_window_then_the_selection_in_order() -> None:
    sel = Selection("gilmore", ("noaa20",), ("SVM16",), 0)  # no backfill still asks for the last 24 h
    assert search_params(sel, "noaa20", datetime(2024, 12, 31, 23, tzinfo=UTC)) == [
        ("action", "index"), ("commit", "Get Products"), ("controller", "products"),
        ("start_date", "2024-12-30"), ("end_date", "2025-01-01"),
        ("sensors[]", "viirs"), ("processing_levels[]", "level1"),
        ("facilities[]", "gilmore"), ("satellites[]", "noaa20"),
    ]


@pytest.mark.parametrize("days", [0, 1, 2, 7])
@pytest.mark.parametrize("now", [datetime(2026, 12, 8, 0, 19, tzinfo=UTC), datetime(2026, 12, 7, 23, 59, tzinfo=UTC),
                                 datetime(2024, 3, 1, 0, 0, 1, tzinfo=UTC)])
def test_the_window_reaches_back_the_whole_backfill_even_just_after_midnight(now, days) -> None:
    """GINA takes whole days: every granule of the last ``backfill_days`` days (at least one) is in the
    window, whatever the time of day (at 00:19 a window that started at midnight missed the evening)."""
    params = dict(search_params(Selection("gilmore", ("snpp",), ("SVM16",), days), "snpp", now))
    lo = datetime.strptime(params["start_date"], "%Y-%m-%d").replace(tzinfo=UTC)
    hi = datetime.strptime(params["end_date"], "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1)
    assert lo <= now - timedelta(days=max(days, 1)) and now + timedelta(hours=12) < hi
    assert (hi - lo).days == max(days, 1) + 2  # no wider than needed


def test_search_url_defaults_to_gina_and_takes_a_stand_in() -> None:
    assert search_url() == "https://nrt-status.gina.alaska.edu/products.json"
    assert search_url("http://127.0.0.1:8123/") == BASE


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"url": f"http://127.0.0.2:8123/p/{README}"}, "not on the products server"),
        ({"url": f"https://127.0.0.1:8123/p/{README}"}, "not on the products server"),
        ({"url": f"http://127.0.0.1:8123/p/../{README}"}, "'..' segment"),
        ({"url": f"http://127.0.0.1:8123/p/%2e%2e/{README}"}, "'..' segment"),
        ({"url": f"http://127.0.0.1:8123/p/{README}", "md5sum": "xyz"}, "is not 32 hex digits"),
        ({"url": f"http://127.0.0.1:8123/p/{README}", "size": -1}, "not a non-negative integer"),
        ({"url": f"http://127.0.0.1:8123/p/{README}", "size": "5"}, "not a non-negative integer"),
        ({"md5sum": "a" * 32}, "without a 'url' string"),
        ("just a string", "without a 'url' string"),
    ],
)
def test_each_refused_entry_says_why(entry, reason) -> None:
    ok, refused = parse_listing([entry], BASE)
    assert ok == [] and len(refused) == 1
    assert reason in refused[0].reason


def test_wanted_puts_geolocation_first_within_a_start_time_and_drops_duplicates() -> None:
    later = README.replace("t1828348_e1829590", "t1830000_e1831250")
    names = [later, README, README.replace("SVM16", "GMTCO"), README]
    ok, _ = parse_listing([{"url": f"http://127.0.0.1:8123/p/{n}"} for n in names], BASE)
    todo = wanted(ok, ["SVM16", "GMTCO"], ["npp"], skip=set())
    assert [g.name for g in todo] == [README.replace("SVM16", "GMTCO"), README, later]
