"""check_grib and open_wind on GRIB2 files written by the GFS emulator."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from earthkeep.errors import IntegrityError, InvalidInput, NotFound
from earthkeep.raster.grib import GRIDS, LatLonGrid, check_grib, inventory, open_wind
from earthkeep.testbed import gfs
from earthkeep.transfer.idx import byte_ranges, merge_adjacent, parse_idx, select

CYCLE = datetime(2024, 1, 1, 12)
UGRD = ":UGRD:10 m above ground:"
VGRD = ":VGRD:10 m above ground:"


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    (path,) = gfs.write_cycle(tmp_path_factory.mktemp("gfs"), CYCLE, [6], grid="1p00")
    return path


def _subset(full: Path, target: Path, patterns: list[str]) -> Path:
    data = full.read_bytes()
    entries = parse_idx(full.with_name(full.name + ".idx").read_text())
    ranges = merge_adjacent(byte_ranges(entries, select(entries, patterns)))
    target.write_bytes(b"".join(data[a : None if b is None else b + 1] for a, b in ranges))
    return target


@pytest.fixture
def wind(full: Path, tmp_path: Path) -> Path:
    return _subset(full, tmp_path / "wind.grib2", [UGRD, VGRD])


def test_accepts_the_wind_subset(wind: Path) -> None:
    summary = check_grib(wind, grid="1p00")

    assert summary.size == wind.stat().st_size
    assert summary.grid == GRIDS["1p00"]
    assert [(m.name, m.short_name, m.cf_name) for m in summary.messages] == [
        ("UGRD", "10u", "u10"),
        ("VGRD", "10v", "v10"),
    ]
    assert all(m.step_range == "6" and m.level == 10 for m in summary.messages)
    assert -40 < summary.messages[0].minimum < summary.messages[0].maximum < 40


def test_expected_fields_may_be_named_like_eccodes_or_cfgrib(wind: Path) -> None:
    check_grib(wind, [("u10", "heightAboveGround", 10), ("10v", "heightAboveGround", 10)], grid="1p00")


def test_accepts_a_whole_file_when_extra_messages_are_allowed(full: Path) -> None:
    summary = check_grib(full, grid=GRIDS["1p00"], allow_extra=True)
    assert len(summary.messages) == len(parse_idx(full.with_name(full.name + ".idx").read_text()))
    with pytest.raises(IntegrityError, match="unexpected messages PRMSL:meanSea:0"):
        check_grib(full, grid="1p00")


def test_rejects_corrupted_bytes(wind: Path) -> None:
    gfs.corrupt_file(wind)
    with pytest.raises(IntegrityError, match=r"message 1 \(UGRD heightAboveGround 10\).*corrupted"):
        check_grib(wind, grid="1p00")


@pytest.mark.parametrize(("keep", "number"), [(-1, 2), (-4, 2), (-1000, 2), (100, 1)])
def test_rejects_a_truncated_file(wind: Path, keep: int, number: int) -> None:
    wind.write_bytes(wind.read_bytes()[:keep])
    with pytest.raises(IntegrityError, match=f"message {number} from byte .* truncated"):
        check_grib(wind, grid="1p00")


def test_rejects_bytes_before_between_or_after_messages(wind: Path) -> None:
    data = wind.read_bytes()
    wind.write_bytes(data + b"\0" * 10)
    with pytest.raises(IntegrityError, match="10 bytes after the last complete message"):
        check_grib(wind, grid="1p00")
    wind.write_bytes(b"junk" + data)
    with pytest.raises(IntegrityError, match="4 unexpected bytes before message 1"):
        check_grib(wind, grid="1p00")


def test_rejects_a_missing_vgrd(full: Path, tmp_path: Path) -> None:
    only_u = _subset(full, tmp_path / "u.grib2", [UGRD])
    with pytest.raises(IntegrityError, match="VGRD at heightAboveGround 10 is missing; the file holds UGRD"):
        check_grib(only_u, grid="1p00")


def test_rejects_a_repeated_message(full: Path, tmp_path: Path) -> None:
    only_u = _subset(full, tmp_path / "u.grib2", [UGRD])
    only_u.write_bytes(only_u.read_bytes() * 2)
    with pytest.raises(IntegrityError, match="UGRD at heightAboveGround 10 is present 2 times"):
        check_grib(only_u, grid="1p00")


def test_rejects_the_wrong_grid(wind: Path) -> None:
    with pytest.raises(IntegrityError, match=r"not on the 0p25 grid: Ni is 360, expected 1440"):
        check_grib(wind, grid="0p25")
    with pytest.raises(IntegrityError, match="iDirectionIncrementInDegrees"):
        check_grib(wind, grid=LatLonGrid("odd", 1.0 + 1e-3))


def test_rejects_a_file_with_no_message(tmp_path: Path) -> None:
    empty = tmp_path / "empty.grib2"
    empty.write_bytes(b"<html>not found</html>")
    with pytest.raises(IntegrityError, match="no GRIB message"):
        check_grib(empty, grid="1p00")


def test_missing_file_and_unknown_grid(tmp_path: Path, wind: Path) -> None:
    with pytest.raises(NotFound):
        check_grib(tmp_path / "absent.grib2")
    with pytest.raises(InvalidInput, match="unknown grid '2p00'"):
        check_grib(wind, grid="2p00")


def test_inventory_prints_what_wgrib2_prints(wind: Path) -> None:
    length = check_grib(wind, grid="1p00").messages[0].length
    assert inventory(wind).splitlines() == [
        "1:0:d=2024010112:UGRD:10 m above ground:6 hour fcst:",
        f"2:{length}:d=2024010112:VGRD:10 m above ground:6 hour fcst:",
    ]


def test_open_wind_stacks_files_by_valid_time(full: Path, wind: Path) -> None:
    ds = open_wind([full, wind])  # the same valid time twice is kept twice
    assert dict(ds.sizes) == {"valid_time": 2, "latitude": 181, "longitude": 360}
    assert set(ds.data_vars) == {"u10", "v10"}
    assert ds.u10.dtype == "float32"
    single = open_wind(wind)
    assert dict(single.sizes) == {"valid_time": 1, "latitude": 181, "longitude": 360}
    assert str(single.valid_time.values[0])[:16] == "2024-01-01T18:00"


def test_open_wind_refuses_files_without_wind(full: Path, tmp_path: Path) -> None:
    no_wind = _subset(full, tmp_path / "prmsl.grib2", [":PRMSL:"])
    with pytest.raises(IntegrityError, match="no u10, v10 at 10 m above ground"):
        open_wind([no_wind])
    with pytest.raises(NotFound):
        open_wind([tmp_path / "absent.grib2"])
    with pytest.raises(InvalidInput):
        open_wind([])
