"""The segment gatherer: complete slots at once, timeliness, required segments, tolerance."""

from __future__ import annotations

from datetime import datetime, timedelta

from earthkeep.granules.gatherer import Gatherer
from earthkeep.granules.settings import Product


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def file_msg(segment: str, start: datetime, orbit: int = 100, platform: str = "Suomi-NPP") -> dict:
    return {"uid": f"{segment}_{start:%H%M%S}", "uri": f"/viirs/sdr/{segment}", "segment": segment,
            "platform_name": platform, "orig_platform_name": "npp", "sensor": ["viirs"], "orbit_number": orbit,
            "start_time": start.isoformat(), "end_time": (start + timedelta(seconds=85)).isoformat()}


T0 = datetime(2024, 5, 1, 12, 0, 0)


def gatherer(clock: Clock, **kw) -> Gatherer:
    p = Product(name="btd", required=["GMTCO", "SVM15"], wanted=["SVM16"], time_tolerance_s=5, timeliness_s=60, **kw)
    return Gatherer([p], "/AVO/viirs", clock=clock)


def test_dataset_is_published_as_soon_as_every_wanted_segment_is_there():
    g = gatherer(Clock())
    assert g.add(file_msg("GMTCO", T0)) == []
    assert g.add(file_msg("SVM15", T0 + timedelta(seconds=2))) == []
    out = g.add(file_msg("SVM16", T0 + timedelta(seconds=3)))
    assert len(out) == 1
    d = out[0]
    assert d.subject == "/AVO/viirs/granule/btd"
    assert d.data["segments"] == ["GMTCO", "SVM15", "SVM16"]
    assert [f["uid"] for f in d.data["dataset"]] == ["GMTCO_120000", "SVM15_120002", "SVM16_120003"]
    assert d.data["start_time"] == T0.isoformat() and d.data["orbit_number"] == 100
    assert g.slots == []


def test_after_timeliness_required_segments_suffice():
    clock = Clock()
    g = gatherer(clock)
    g.add(file_msg("GMTCO", T0))
    g.add(file_msg("SVM15", T0))
    assert g.expire() == []
    clock.now = 61
    out = g.expire()
    assert [d.data["segments"] for d in out] == [["GMTCO", "SVM15"]]


def test_after_timeliness_a_missing_required_segment_drops_the_slot():
    clock = Clock()
    g = gatherer(clock)
    g.add(file_msg("GMTCO", T0))
    g.add(file_msg("SVM16", T0))
    clock.now = 61
    assert g.expire() == []
    assert g.dropped == 1 and g.slots == []


def test_other_times_platforms_and_orbits_open_their_own_slots():
    g = gatherer(Clock())
    g.add(file_msg("GMTCO", T0))
    g.add(file_msg("GMTCO", T0 + timedelta(seconds=86)))
    g.add(file_msg("GMTCO", T0, platform="NOAA-20"))
    g.add(file_msg("GMTCO", T0, orbit=101))
    assert len(g.slots) == 4


def test_segments_of_no_product_are_ignored():
    g = gatherer(Clock())
    assert g.add(file_msg("SVI01", T0)) == [] and g.slots == []
