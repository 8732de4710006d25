"""Pass direction from the testbed's orbital elements (pyorbital), checked against the latitude trend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pyorbital.orbital import Orbital

from earthkeep.granules.orbits import Elements, parse_tle
from earthkeep.testbed.gina import tle_text

EPOCH = datetime(2024, 5, 1, tzinfo=UTC)


def test_parse_tle_finds_every_set_by_name():
    sets = parse_tle(tle_text(["snpp", "noaa20"], EPOCH))
    assert set(sets) == {"SUOMI NPP", "NOAA 20"}
    assert all(l1.startswith("1 ") and l2.startswith("2 ") for l1, l2 in sets.values())


def test_direction_follows_the_latitude_trend():
    elements = Elements.from_text(tle_text(["snpp"], EPOCH))
    l1, l2 = elements.sets["SUOMI NPP"]
    orb = Orbital("SUOMI NPP", line1=l1, line2=l2)
    seen = set()
    for minutes in range(0, 100, 7):
        t = (EPOCH + timedelta(minutes=minutes)).replace(tzinfo=None)
        lat0 = orb.get_lonlatalt(t - timedelta(seconds=20))[1]
        lat1 = orb.get_lonlatalt(t + timedelta(seconds=20))[1]
        expected = "ascending" if lat1 > lat0 else "descending"
        got = elements.direction("Suomi-NPP", t.replace(tzinfo=UTC))
        assert got == expected
        seen.add(got)
    assert seen == {"ascending", "descending"}


def test_unknown_platform_has_unknown_direction():
    assert Elements.from_text(tle_text(["snpp"], EPOCH)).direction("NOAA-20", EPOCH) == "unknown"
    assert Elements().direction("Suomi-NPP", EPOCH) == "unknown"
