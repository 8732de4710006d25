"""GFS as data: paths per layout, cycles, mirrors, byte-range plans from real inventories."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from earthkeep.errors import IntegrityError, InvalidInput, NotFound
from earthkeep.sources.gfs import (
    GfsFile,
    candidate_cycles,
    cycle_complete,
    floor_cycle,
    latest_complete_cycle,
    mirrors_for,
    plan_ranges,
)
from earthkeep.testbed import gfs as emulator
from earthkeep.transfer.idx import parse_idx

C = datetime(2024, 1, 1, 6, tzinfo=UTC)
WIND = [":UGRD:10 m above ground:", ":VGRD:10 m above ground:"]


def test_paths_follow_the_layout_of_the_cycle_date() -> None:
    f = GfsFile(C, 3)
    assert f.path == emulator.relative_path(C, 3) == "gfs.20240101/06/atmos/gfs.t06z.pgrb2.0p25.f003"
    assert GfsFile(datetime(2020, 5, 1, 12, tzinfo=UTC), 120, "1p00").path == (
        "gfs.20200501/12/gfs.t12z.pgrb2.1p00.f120"
    )
    assert f.idx_url("https://noaa-gfs-bdp-pds.s3.amazonaws.com/") == (
        "https://noaa-gfs-bdp-pds.s3.amazonaws.com/gfs.20240101/06/atmos/gfs.t06z.pgrb2.0p25.f003.idx"
    )
    assert GfsFile.parse(f.file_id) == f and f.valid_time == C + timedelta(hours=3)
    assert f.store_key == "forcing/gfs/gfs.20240101/06/gfs.t06z.pgrb2.0p25.f003.grib2"


@pytest.mark.parametrize(
    "bad",
    [
        lambda: GfsFile(C.replace(hour=5), 0),
        lambda: GfsFile(C, 385),
        lambda: GfsFile(C.replace(tzinfo=None), 0),
        lambda: GfsFile.parse("gfs.x"),
    ],
)
def test_bad_files_are_refused(bad) -> None:
    with pytest.raises(InvalidInput):
        bad()


def test_cycles_and_mirrors_by_age() -> None:
    now = datetime(2024, 1, 1, 17, 59, tzinfo=UTC)
    assert floor_cycle(now) == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert candidate_cycles(now, 3) == [datetime(2024, 1, 1, h, tzinfo=UTC) for h in (12, 6, 0)]
    mirrors = {"aws": "a", "nomads": "n", "google": "g"}
    assert list(mirrors_for(C, mirrors, C + timedelta(days=3))) == ["aws", "nomads", "google"]
    assert list(mirrors_for(C, mirrors, C + timedelta(days=11))) == ["aws", "google"]  # NOMADS keeps ~10 days


@pytest.fixture(scope="module")
def grib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gfs")
    return emulator.add_hour(root, C.replace(tzinfo=None), 3, grid="1p00", packing="ccsds")


def test_plan_merges_the_adjacent_wind_messages(grib: Path) -> None:
    idx = grib.with_name(grib.name + ".idx").read_text()
    plan = plan_ranges(idx, WIND)
    entries = parse_idx(idx)
    u = next(i for i, e in enumerate(entries) if e.search_text.startswith(":UGRD:10 m above ground:"))
    assert [e.variable for e in plan.messages] == ["UGRD", "VGRD"]
    assert plan.ranges == [(entries[u].offset, entries[u + 2].offset - 1)]
    assert plan.known_size == entries[u + 2].offset - entries[u].offset


def test_plan_of_the_last_message_is_open_ended(grib: Path) -> None:
    idx = grib.with_name(grib.name + ".idx").read_text()
    last = parse_idx(idx)[-1]
    plan = plan_ranges(idx, [f":{last.variable}:{last.level}:"])
    assert plan.ranges == [(last.offset, None)] and plan.known_size is None


def test_inventories_that_cannot_be_used_are_integrity_errors(grib: Path) -> None:
    idx = grib.with_name(grib.name + ".idx").read_text()
    with pytest.raises(IntegrityError, match="no message matches"):
        plan_ranges(idx, [*WIND, ":UGRD:99 m above ground:"])
    with pytest.raises(IntegrityError, match="inventory"):
        plan_ranges("<html>Not Found</html>\n", WIND)


class FakeInventories:
    """Answers an inventory for the URLs it holds; NotFound otherwise."""

    def __init__(self, urls: set[str]) -> None:
        self.urls, self.asked = urls, []

    async def inventory(self, url: str) -> str:
        self.asked.append(url)
        if url not in self.urls:
            raise NotFound(url)
        return "1:0:d=2024010100:UGRD:10 m above ground:anl:\n"


def test_latest_complete_cycle_needs_every_idx_on_one_mirror() -> None:
    hours = [0, 3, 6]
    newer, older = C + timedelta(hours=6), C
    urls = {GfsFile(older, h, "1p00").idx_url("http://a") for h in hours}
    urls |= {GfsFile(newer, h, "1p00").idx_url("http://a") for h in (0, 6)}  # f003 missing
    prober = FakeInventories(urls)
    found = asyncio.run(
        latest_complete_cycle(prober, {"aws": "http://a"}, hours, "1p00", now=newer + timedelta(hours=5), lookback=4)
    )
    assert found == (older, "aws")
    # The last hour is asked first: a cycle still being published costs one request.
    prober.asked.clear()
    assert not asyncio.run(cycle_complete(prober, "http://a", C + timedelta(hours=12), hours, "1p00"))
    assert len(prober.asked) == 1 and prober.asked[0].endswith("f006.idx")


@pytest.mark.parametrize("patterns", [WIND, [":PRMSL:", ":UGRD:10 m above ground:", ":ICEC:"]])
def test_subset_idx_is_the_inventory_of_the_fetched_bytes(grib: Path, tmp_path: Path, patterns) -> None:
    from earthkeep.raster.grib import inventory

    plan = plan_ranges(grib.with_name(grib.name + ".idx").read_text(), patterns)
    raw = grib.read_bytes()
    subset = tmp_path / "subset.grib2"
    subset.write_bytes(b"".join(raw[a : (b + 1 if b is not None else None)] for a, b in plan.ranges))
    assert plan.subset_idx() == inventory(subset)
