"""VIIRS SDR names (format <-> parse), hostile names and listing entries, search parameters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from earthkeep.errors import InvalidInput, UnsafePath
from earthkeep.sources.gina import (
    SdrName,
    Selection,
    parse_listing,
    parse_sdr_name,
    search_params,
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
    assert params["start_date"] == "2024-05-09" and params["end_date"] == "2024-05-11"
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
