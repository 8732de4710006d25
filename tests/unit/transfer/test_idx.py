"""GRIB inventories to byte ranges, on inventories written by the GFS emulator."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest

from earthkeep.errors import InvalidInput
from earthkeep.testbed import gfs
from earthkeep.transfer.idx import (
    IdxEntry,
    byte_ranges,
    expected_bytes,
    merge_adjacent,
    parse_idx,
    select,
)

CYCLE = datetime(2024, 1, 1, 6)
WIND = [":UGRD:10 m above ground:", ":VGRD:10 m above ground:"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("gfs")
    return dict(zip((0, 3), gfs.write_cycle(root, CYCLE, [0, 3], grid="1p00"), strict=True))


def _idx(path: Path) -> str:
    return path.with_name(path.name + ".idx").read_text()


def test_parses_a_real_inventory_line_by_line(files: dict[int, Path]) -> None:
    text = _idx(files[3])
    entries = parse_idx(text)

    assert [e.line for e in entries] == text.splitlines()
    assert entries[0].line == "1:0:d=2024010106:PRMSL:mean sea level:3 hour fcst:"
    assert [e.number for e in entries] == list(range(1, len(entries) + 1))
    assert all(a.offset < b.offset for a, b in pairwise(entries))
    assert {e.date for e in entries} == {datetime(2024, 1, 1, 6, tzinfo=UTC)}
    ugrd = next(e for e in entries if e.variable == "UGRD" and e.level == "10 m above ground")
    assert (ugrd.forecast, ugrd.part, ugrd.extra) == ("3 hour fcst", None, "")
    apcp = next(e for e in entries if e.variable == "APCP")
    assert apcp.forecast == "0-3 hour acc fcst"


def test_analysis_hour_says_anl(files: dict[int, Path]) -> None:
    entries = parse_idx(_idx(files[0]))
    assert {e.forecast for e in entries} == {"anl"}
    assert "APCP" not in {e.variable for e in entries}


def test_accepts_crlf_a_missing_final_newline_sub_messages_and_extra_fields() -> None:
    text = (
        "1:0:d=2024071600:TMP:2 m above ground:3 hour fcst:ens mean\r\n"
        "2.1:100:d=2024071600:UGRD:10 m above ground:3 hour fcst:\r\n"
        "2.2:100:d=2024071600:VGRD:10 m above ground:3 hour fcst:\r\n"
        "3:300:d=2024071600:APCP:surface:0-3 hour acc fcst:"
    )
    entries = parse_idx(text)
    assert entries[0].extra == "ens mean"
    assert [(e.number, e.part) for e in entries] == [(1, None), (2, 1), (2, 2), (3, None)]
    # both halves of message 2 come from one range
    assert byte_ranges(entries, select(entries, WIND)) == [(100, 299)]


GOOD = "1:0:d=2024010100:PRMSL:mean sea level:anl:\n2:50:d=2024010100:UGRD:10 m above ground:anl:\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        (GOOD.replace("\n2:", "\n\n2:"), "colons"),
        (GOOD.replace("anl:\n2", "anl\n2"), "colons"),
        (GOOD.replace(":50:", ":5O:"), "offset"),
        (GOOD.replace(":50:", ":-50:"), "offset"),
        (GOOD.replace("2:50", "x:50"), "message number"),
        (GOOD.replace("d=2024010100:UGRD", "d=20240101:UGRD"), "reference time"),
        (GOOD.replace("d=2024010100:UGRD", "d=2024133100:UGRD"), "valid date"),
        (GOOD.replace(":UGRD:", "::"), "empty variable"),
        (GOOD.replace(":anl:\n2", "::\n2"), "empty variable"),
        (GOOD.replace(":50:", ":0:"), "does not increase"),
        (GOOD + "3:40:d=2024010100:VGRD:10 m above ground:anl:\n", "does not increase"),
        (GOOD.replace("2:50", "3:50"), "count up by one"),
        (GOOD.replace("1:0:", "1:7:"), "starts with message 1 at byte 0"),
        ("2.2:0:d=2024010100:UGRD:10 m above ground:anl:\n2.1:0:d=2024010100:VGRD:10 m above ground:anl:\n", "byte 0"),
    ],
)
def test_rejects_malformed_inventories(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_idx(text)


def test_rejects_sub_messages_out_of_order() -> None:
    text = GOOD + "3.2:90:d=2024010100:UGRD:1 m:anl:\n3.1:90:d=2024010100:VGRD:1 m:anl:\n"
    with pytest.raises(InvalidInput, match="out of order"):
        parse_idx(text)


def test_select_matches_variable_and_level_in_file_order(files: dict[int, Path]) -> None:
    entries = parse_idx(_idx(files[3]))

    chosen = select(entries, list(reversed(WIND)))

    assert [(e.variable, e.level) for e in chosen] == [("UGRD", "10 m above ground"), ("VGRD", "10 m above ground")]
    assert chosen[1].number == chosen[0].number + 1
    assert select(entries, [":[UV]GRD:10 m above ground:"]) == chosen  # regexes, like Herbie
    assert len(select(entries, [":UGRD:"])) == 7  # 500, 850, 1000 mb and 10, 20, 80, 100 m
    assert len(select(entries, [":UGRD:10 m above ground:"])) == 1  # not 100 m
    assert select(entries, [":APCP:surface:0-3 hour acc fcst:"])[0].variable == "APCP"
    assert select(entries, []) == []


def test_select_rejects_a_bad_regex_or_a_bare_string(files: dict[int, Path]) -> None:
    entries = parse_idx(_idx(files[3]))
    with pytest.raises(InvalidInput, match="pattern"):
        select(entries, [":UGRD:(10"])
    with pytest.raises(InvalidInput, match="list"):
        select(entries, ":UGRD:10 m above ground:")  # type: ignore[arg-type]


def test_each_message_runs_to_the_next_offset_and_the_last_is_open_ended(files: dict[int, Path]) -> None:
    entries = parse_idx(_idx(files[3]))
    size = files[3].stat().st_size

    ranges = byte_ranges(entries, entries)

    assert ranges[:-1] == [(a.offset, b.offset - 1) for a, b in pairwise(entries)]
    assert ranges[-1] == (entries[-1].offset, None)
    assert byte_ranges(entries, entries[-1:], file_size=size) == [(entries[-1].offset, size - 1)]
    assert byte_ranges(entries, [entries[4], entries[2]]) == [
        (entries[2].offset, entries[3].offset - 1),
        (entries[4].offset, entries[5].offset - 1),
    ]


def test_byte_ranges_rejects_foreign_entries_and_short_files(files: dict[int, Path]) -> None:
    entries = parse_idx(_idx(files[3]))
    stranger = IdxEntry(1, 0, entries[0].date, "TMP", "surface", "anl", "1:0:d=2024010106:TMP:surface:anl:")
    with pytest.raises(InvalidInput, match="not part of this inventory"):
        byte_ranges(entries, [stranger])
    with pytest.raises(InvalidInput, match="does not reach past"):
        byte_ranges(entries, entries[:1], file_size=entries[-1].offset)


def test_adjacent_wind_messages_merge_into_one_range(files: dict[int, Path]) -> None:
    entries = parse_idx(_idx(files[3]))
    ugrd, vgrd = select(entries, WIND)
    after = entries[entries.index(vgrd) + 1]

    merged = merge_adjacent(byte_ranges(entries, [ugrd, vgrd]))

    assert merged == [(ugrd.offset, after.offset - 1)]
    data = files[3].read_bytes()
    first, last = merged[0]
    assert data[first : first + 4] == b"GRIB"
    assert data[last - 3 : last + 1] == b"7777"


@pytest.mark.parametrize(
    ("ranges", "merged"),
    [
        ([], []),
        ([(0, 9), (10, 19)], [(0, 19)]),
        ([(10, 19), (0, 9)], [(0, 19)]),
        ([(0, 9), (11, 19)], [(0, 9), (11, 19)]),
        ([(0, 15), (10, 19)], [(0, 19)]),
        ([(0, 30), (10, 19)], [(0, 30)]),
        ([(0, 9), (10, None)], [(0, None)]),
        ([(5, None), (10, 19), (30, None)], [(5, None)]),
        ([(0, 0), (1, 1), (3, 3)], [(0, 1), (3, 3)]),
    ],
)
def test_merge_adjacent(ranges: list[tuple[int, int | None]], merged: list[tuple[int, int | None]]) -> None:
    assert merge_adjacent(ranges) == merged


@pytest.mark.parametrize("bad", [(-1, 5), (10, 9)])
def test_merge_adjacent_rejects_invalid_ranges(bad: tuple[int, int]) -> None:
    with pytest.raises(InvalidInput, match="invalid byte range"):
        merge_adjacent([bad])


def test_expected_bytes_is_what_the_ranges_cut_out_of_the_file(files: dict[int, Path]) -> None:
    entries = parse_idx(_idx(files[3]))
    data = files[3].read_bytes()
    chosen = [*select(entries, WIND), entries[-1]]

    total = expected_bytes(entries, chosen, len(data))

    ranges = byte_ranges(entries, chosen)
    cut = b"".join(data[a : None if b is None else b + 1] for a, b in ranges)
    assert total == len(cut)
    assert expected_bytes(entries, entries, len(data)) == len(data)
