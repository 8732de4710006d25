"""The emulated GFS tree: exact layout, real GRIB2, inventories whose offsets are true."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import eccodes as ec
import numpy as np
import pytest
import xarray as xr

from earthkeep.errors import InvalidInput, NotFound
from earthkeep.raster.grib import NCEP_NAMES, check_grib, open_wind
from earthkeep.testbed import gfs
from earthkeep.transfer.idx import byte_ranges, merge_adjacent, parse_idx, select

C00 = datetime(2024, 1, 1, 0)
C06 = datetime(2024, 1, 1, 6)
WIND = [":UGRD:10 m above ground:", ":VGRD:10 m above ground:"]


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _name(cycle: datetime, hour: int) -> str:
    return gfs.relative_path(cycle, hour, "1p00")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[datetime, list[int]]]:
    root = tmp_path_factory.mktemp("gfs")
    published = gfs.write_tree(root, [C06, C00], [0, 3, 6], complete=False, grid="1p00")
    return root, published


def test_paths_are_those_of_nomads_and_aws() -> None:
    assert gfs.relative_path(C06, 3) == "gfs.20240101/06/atmos/gfs.t06z.pgrb2.0p25.f003"
    assert gfs.relative_path(datetime(2024, 2, 29, 18), 120, "1p00") == (
        "gfs.20240229/18/atmos/gfs.t18z.pgrb2.1p00.f120"
    )
    assert gfs.idx_path(Path("/r"), C00, 384) == Path("/r/gfs.20240101/00/atmos/gfs.t00z.pgrb2.0p25.f384.idx")
    aware = datetime(2024, 1, 1, 8, tzinfo=timezone(timedelta(hours=2)))
    assert gfs.relative_path(aware, 0) == gfs.relative_path(C06, 0)


@pytest.mark.parametrize(
    ("cycle", "hour", "grid", "reason"),
    [
        (datetime(2024, 1, 1, 5), 0, "0p25", "not at 00, 06, 12 or 18"),
        (datetime(2024, 1, 1, 6, 30), 0, "0p25", "not at 00, 06, 12 or 18"),
        (C06, 385, "0p25", "outside 0..384"),
        (C06, -3, "0p25", "outside 0..384"),
        (C06, 3, "0p30", "valid grids: 0p25, 0p50, 1p00"),
    ],
)
def test_bad_cycles_hours_and_grids_are_refused(cycle: datetime, hour: int, grid: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        gfs.relative_path(cycle, hour, grid)


def test_tree_layout_is_exact_and_the_latest_cycle_is_still_arriving(
    tree: tuple[Path, dict[datetime, list[int]]],
) -> None:
    root, published = tree

    complete = {_name(C00, h) for h in (0, 3, 6)} | {_name(C00, h) + ".idx" for h in (0, 3, 6)}
    arriving = {_name(C06, 0), _name(C06, 0) + ".idx", _name(C06, 3)}  # f003 uploaded, its .idx not yet
    assert _files(root) == complete | arriving
    assert published == {C00: [0, 3, 6], C06: [0]}


def test_missing_hours_per_cycle_and_files_added_over_time(tmp_path: Path) -> None:
    published = gfs.write_tree(tmp_path, [C00, C06], [0, 3], complete={C06: {3}}, grid="1p00", extra_messages=False)
    assert published == {C00: [0, 3], C06: [0]}
    assert not gfs.grib_path(tmp_path, C06, 3, "1p00").exists()

    path = gfs.add_hour(tmp_path, C06, 3, grid="1p00", extra_messages=False)

    assert path == gfs.grib_path(tmp_path, C06, 3, "1p00")
    assert gfs.idx_path(tmp_path, C06, 3, "1p00").read_text().startswith("1:0:d=2024010106:UGRD:")
    assert len(_files(tmp_path)) == 8  # and no temporary file is left behind


def test_write_tree_refuses_a_plan_for_a_cycle_it_does_not_write(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not written"):
        gfs.write_tree(tmp_path, [C00], [0], complete={C06: False}, grid="1p00")
    assert gfs.write_tree(tmp_path, [], [0], complete=False) == {}


def test_idx_offsets_are_the_starts_of_the_messages_they_name(
    tree: tuple[Path, dict[datetime, list[int]]],
) -> None:
    root, _ = tree
    path = gfs.grib_path(root, C00, 3, "1p00")
    data = path.read_bytes()
    entries = parse_idx(gfs.idx_path(root, C00, 3, "1p00").read_text())

    assert len(entries) >= 20
    ends = [e.offset for e in entries[1:]] + [len(data)]
    for entry, end in zip(entries, ends, strict=True):
        h = ec.codes_new_from_message(data[entry.offset : end])  # the message read from the offset alone
        try:
            param = tuple(ec.codes_get_long(h, k) for k in ("discipline", "parameterCategory", "parameterNumber"))
            assert NCEP_NAMES[param] == entry.variable
            assert ec.codes_get_long(h, "totalLength") == end - entry.offset  # messages tile the file
            assert ec.codes_get(h, "dataDate") == 20240101 and ec.codes_get(h, "dataTime") == 0
        finally:
            ec.codes_release(h)
    assert entries[0].variable == "PRMSL"
    levels = [e.level for e in entries if e.variable in ("UGRD", "VGRD")]
    assert {"500 mb", "1000 mb", "10 m above ground", "20 m above ground", "100 m above ground"} <= set(levels)


def test_the_wind_ranges_alone_make_a_valid_grib2_with_u10_and_v10(
    tree: tuple[Path, dict[datetime, list[int]]], tmp_path: Path
) -> None:
    root, _ = tree
    data = gfs.grib_path(root, C00, 6, "1p00").read_bytes()
    entries = parse_idx(gfs.idx_path(root, C00, 6, "1p00").read_text())
    ranges = merge_adjacent(byte_ranges(entries, select(entries, WIND)))
    assert len(ranges) == 1  # UGRD and VGRD at 10 m are neighbours, as in GFS
    subset = tmp_path / "wind.grib2"
    subset.write_bytes(b"".join(data[a : None if b is None else b + 1] for a, b in ranges))

    summary = check_grib(subset, grid="1p00")
    with xr.open_dataset(subset, engine="cfgrib", backend_kwargs={"indexpath": ""}) as ds:
        assert set(ds.data_vars) == {"u10", "v10"}
        assert ds.u10.shape == (181, 360)
        assert float(ds.latitude[0]) == 90.0 and float(ds.longitude[-1]) == 359.0
        assert ds.valid_time.values == np.datetime64("2024-01-01T06:00")

    assert [m.cf_name for m in summary.messages] == ["u10", "v10"]
    assert subset.stat().st_size < len(data) / 10


def test_the_quarter_degree_grid_is_gfs(tmp_path: Path) -> None:
    (path,) = gfs.write_cycle(tmp_path, C06, [3], extra_messages=False, packing="ccsds")

    assert path.name == "gfs.t06z.pgrb2.0p25.f003"
    summary = check_grib(path, grid="0p25")
    with path.open("rb") as fh:
        h = ec.codes_grib_new_from_file(fh)
        try:
            keys = ("gridType", "Ni", "Nj", "latitudeOfFirstGridPointInDegrees", "longitudeOfLastGridPointInDegrees")
            assert [ec.codes_get(h, k) for k in keys] == ["regular_ll", 1440, 721, 90.0, 359.75]
            assert ec.codes_get(h, "centre") == "kwbc"
        finally:
            ec.codes_release(h)
    assert [m.name for m in summary.messages] == ["UGRD", "VGRD"]


def test_wind_is_plausible_varies_with_hour_and_is_deterministic(
    tree: tuple[Path, dict[datetime, list[int]]], tmp_path: Path
) -> None:
    root, _ = tree
    ds = open_wind([gfs.grib_path(root, C00, h, "1p00") for h in (6, 0, 3)])

    assert list(ds.step.values.astype("timedelta64[h]").astype(int)) == [0, 3, 6]
    speed = np.hypot(ds.u10, ds.v10)
    assert 0.5 < float(speed.mean()) < 15 and float(speed.max()) < 40
    assert float(abs(ds.u10[1] - ds.u10[0]).mean()) > 0.1
    # same valid time from two cycles: the same weather
    again = open_wind(gfs.grib_path(root, C06, 0, "1p00"))
    np.testing.assert_array_equal(again.u10[0].values, ds.u10[2].values)

    assert gfs.render(C00, 3, grid="1p00") == gfs.grib_path(root, C00, 3, "1p00").read_bytes()
    assert gfs.render(C00, 3, grid="1p00", seed=1) != gfs.render(C00, 3, grid="1p00")


def test_extra_messages_can_be_left_out(tmp_path: Path) -> None:
    (path,) = gfs.write_cycle(tmp_path, C00, [0], grid="1p00", extra_messages=False, packing="simple")
    text = gfs.idx_path(tmp_path, C00, 0, "1p00").read_text()
    size = 360 * 181 * 12 // 8
    assert text.splitlines() == [
        "1:0:d=2024010100:UGRD:10 m above ground:anl:",
        f"2:{path.stat().st_size // 2}:d=2024010100:VGRD:10 m above ground:anl:",
    ]
    assert size < path.stat().st_size // 2 < size + 200


def test_corrupt_file_flips_bytes_inside_the_ugrd_message_only(tmp_path: Path) -> None:
    (path,) = gfs.write_cycle(tmp_path, C00, [3], grid="1p00")
    before = path.read_bytes()
    entries = parse_idx(gfs.idx_path(tmp_path, C00, 3, "1p00").read_text())
    ((start, end),) = byte_ranges(entries, select(entries, WIND[:1]))

    first, last = gfs.corrupt_file(path)

    after = path.read_bytes()
    assert len(after) == len(before)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert changed[0] >= first and changed[-1] <= last and last - first + 1 == 64
    assert start < first and last < end - 4  # inside the data, not the header or "7777"
    with pytest.raises(NotFound, match="no message matching"):
        gfs.corrupt_file(path, pattern=":WIND:")


def test_mismatched_idx_parses_but_points_between_messages(tmp_path: Path) -> None:
    (path,) = gfs.write_cycle(tmp_path, C00, [3], grid="1p00")
    data = path.read_bytes()

    idx = gfs.write_mismatched_idx(path)

    entries = parse_idx(idx.read_text())  # still well formed
    assert data[entries[0].offset : entries[0].offset + 4] == b"GRIB"
    assert all(data[e.offset : e.offset + 4] != b"GRIB" for e in entries[1:])


def test_unknown_packing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="valid: complex, ccsds, simple"):
        gfs.add_hour(tmp_path, C00, 0, grid="1p00", packing="jpeg")


def test_cycles_may_be_timezone_aware() -> None:
    aware = datetime(2024, 1, 1, 6, tzinfo=UTC)
    assert gfs.render(aware, 0, grid="1p00", extra_messages=False) == gfs.render(
        C06, 0, grid="1p00", extra_messages=False
    )
