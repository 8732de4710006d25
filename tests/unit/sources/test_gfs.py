"""GFS as data: paths per layout, cycles, mirrors, byte-range plans from real inventories."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from earthkeep.errors import IntegrityError, InvalidInput, NotFound
from earthkeep.sources.gfs import (
    MIRRORS,
    GfsFile,
    RangePlan,
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


# ------------------------------------------------------------- the provider as data


def test_mirror_table_is_in_priority_order_with_the_rolling_one_marked() -> None:
    assert list(MIRRORS) == ["aws", "nomads", "google"]
    assert [(m.name, m.keeps_days) for m in MIRRORS.values()] == [("aws", None), ("nomads", 10), ("google", None)]
    assert all(name == m.name and m.base_url.startswith("https://") for name, m in MIRRORS.items())


def test_a_rolling_mirror_keeps_a_cycle_up_to_its_last_day_exactly() -> None:
    nomads = MIRRORS["nomads"]
    assert nomads.keeps(C, C + timedelta(days=10))
    assert not nomads.keeps(C, C + timedelta(days=10, seconds=1))
    assert MIRRORS["aws"].keeps(C, C + timedelta(days=3650))


@pytest.mark.parametrize(
    ("cycle", "path"),
    [
        (datetime(2021, 3, 22, 6, tzinfo=UTC), "gfs.20210322/06/gfs.t06z.pgrb2.0p25.f000"),  # last cycle of GFS v15
        (datetime(2021, 3, 22, 12, tzinfo=UTC), "gfs.20210322/12/atmos/gfs.t12z.pgrb2.0p25.f000"),  # first of v16
    ],
)
def test_the_atmos_directory_starts_with_the_first_gfs_v16_cycle(cycle: datetime, path: str) -> None:
    assert GfsFile(cycle, 0).path == path


@pytest.mark.parametrize(
    "f",
    [
        GfsFile(datetime(2019, 12, 31, 18, tzinfo=UTC), 384, "1p00"),
        GfsFile(datetime(2021, 3, 22, 6, tzinfo=UTC), 0, "0p50"),
        GfsFile(datetime(2024, 2, 29, 0, tzinfo=UTC), 120),
    ],
)
def test_file_ids_format_and_parse_back_on_both_layouts(f: GfsFile) -> None:
    assert GfsFile.parse(f.file_id) == f
    assert f.file_id == f"gfs.{f.cycle:%Y%m%d}.{f.cycle:%H}.{f.grid}.f{f.hour:03d}"
    assert f.url("http://127.0.0.1:9/base/") == f"http://127.0.0.1:9/base/{f.path}"


def test_a_file_id_of_a_cycle_that_does_not_exist_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not at 00, 06, 12 or 18 UTC"):
        GfsFile.parse("gfs.20240101.03.0p25.f003")
    with pytest.raises(InvalidInput, match=r"outside 0\.\.384"):
        GfsFile.parse("gfs.20240101.00.0p25.f999")


def test_cycles_are_floored_in_utc_whatever_the_zone_of_the_clock() -> None:
    plus5 = timezone(timedelta(hours=5))
    assert floor_cycle(datetime(2024, 1, 1, 2, 30, tzinfo=plus5)) == datetime(2023, 12, 31, 18, tzinfo=UTC)
    assert candidate_cycles(datetime(2024, 1, 1, 5, 59, tzinfo=UTC), 3) == [
        datetime(2024, 1, 1, 0, tzinfo=UTC), datetime(2023, 12, 31, 18, tzinfo=UTC),
        datetime(2023, 12, 31, 12, tzinfo=UTC)]


def test_a_plan_knows_its_size_unless_a_range_is_open_ended() -> None:
    assert RangePlan([(0, 9), (20, 29)], [], []).known_size == 20
    assert RangePlan([(0, 9), (20, None)], [], []).known_size is None
    assert RangePlan([], [], []).known_size == 0
