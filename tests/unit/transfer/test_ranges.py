"""Byte-range arithmetic: merging, splitting, headers, coverage and request planning."""

from __future__ import annotations

import itertools

import pytest

from earthkeep.errors import InvalidInput
from earthkeep.transfer.plan import MAX_HEAD_PIECE, MIN_PIECE, TAIL_SHARE, Fetch, plan_fetches, plan_segments
from earthkeep.transfer.ranges import (
    ContentRange,
    Coverage,
    Span,
    format_range,
    layout,
    merge_ranges,
    parse_content_range,
    split_segments,
)

# ------------------------------------------------------------------ merge_ranges


@pytest.mark.parametrize(
    ("ranges", "gap", "expected"),
    [
        ([], 0, []),
        ([(0, 9)], 0, [(0, 9)]),
        ([(0, 9), (10, 19)], 0, [(0, 19)]),
        ([(10, 19), (0, 9)], 0, [(0, 19)]),
        ([(0, 9), (11, 19)], 0, [(0, 9), (11, 19)]),
        ([(0, 9), (11, 19)], 1, [(0, 19)]),
        ([(0, 9), (15, 20)], 5, [(0, 20)]),
        ([(0, 9), (16, 20)], 5, [(0, 9), (16, 20)]),
        ([(0, 100), (10, 20)], 0, [(0, 100)]),
        ([(5, 9), (0, 6)], 0, [(0, 9)]),
        ([(0, 9), (5, None)], 0, [(0, None)]),
        ([(0, None), (50, 60)], 0, [(0, None)]),
        ([(100, None), (0, 9)], 0, [(0, 9), (100, None)]),
        ([(0, 9), (10, None)], 0, [(0, None)]),
        ([(3, 3), (4, 4), (5, 5)], 0, [(3, 5)]),
    ],
)
def test_merge_ranges(ranges, gap, expected):
    assert merge_ranges(ranges, gap=gap) == expected


@pytest.mark.parametrize("bad", [[(-1, 5)], [(5, 4)], [(1.5, 3)], [(1,)], [("a", "b")]])
def test_merge_ranges_rejects_malformed(bad):
    with pytest.raises(InvalidInput):
        merge_ranges(bad)


def test_merge_ranges_rejects_negative_gap():
    with pytest.raises(InvalidInput):
        merge_ranges([(0, 1)], gap=-1)


# ---------------------------------------------------------------- split_segments


def test_split_segments_covers_everything_in_order():
    parts = split_segments(10_000_003, 4, min_segment=1)
    assert len(parts) == 4
    assert parts[0][0] == 0 and parts[-1][1] == 10_000_002
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(parts))
    lengths = [e - s + 1 for s, e in parts]
    assert max(lengths) - min(lengths) <= 1


def test_split_segments_respects_min_segment():
    assert split_segments(2_500_000, 8, min_segment=1_000_000) == [(0, 1_249_999), (1_250_000, 2_499_999)]
    assert split_segments(10, 4, min_segment=100) == [(0, 9)]


def test_split_segments_edges():
    assert split_segments(0, 4) == []
    assert split_segments(3, 8, min_segment=1) == [(0, 0), (1, 1), (2, 2)]
    assert split_segments(4, 2, min_segment=1, start=100) == [(100, 101), (102, 103)]
    with pytest.raises(InvalidInput):
        split_segments(10, 0)
    with pytest.raises(InvalidInput):
        split_segments(-1, 2)


# ---------------------------------------------------------------------- headers


def test_format_range():
    assert format_range([(0, 99)]) == "bytes=0-99"
    assert format_range([(100, None)]) == "bytes=100-"
    assert format_range([(0, 0), (10, 19), (30, None)]) == "bytes=0-0,10-19,30-"
    with pytest.raises(InvalidInput):
        format_range([])
    with pytest.raises(InvalidInput):
        format_range([(10, 5)])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/1000", ContentRange(0, 99, 1000)),
        ("bytes 0-0/1", ContentRange(0, 0, 1)),
        ("bytes 500-999/*", ContentRange(500, 999, None)),
        ("bytes */1000", ContentRange(None, None, 1000)),
        ("Bytes  7-8/9 ", ContentRange(7, 8, 9)),
    ],
)
def test_parse_content_range(value, expected):
    assert parse_content_range(value) == expected


@pytest.mark.parametrize(
    "value", ["", "bytes */*", "items 0-1/2", "bytes 5-4/10", "bytes 0-10/10", "bytes 0-/10", "bytes=0-1/2"]
)
def test_parse_content_range_rejects(value):
    with pytest.raises(InvalidInput):
        parse_content_range(value)


def test_content_range_length():
    assert parse_content_range("bytes 10-19/100").length == 10
    assert parse_content_range("bytes */100").length == 0


# ---------------------------------------------------------------------- layout


def test_layout_whole_file_and_unknown_size():
    assert layout(None, 1000) == [Span(0, 0, 1000)]
    assert layout([], None) == [Span(0, 0, None)]


def test_layout_concatenates_ranges_in_request_order():
    spans = layout([(100, 109), (0, 4), (150, None)], 200)
    assert spans == [Span(100, 0, 10), Span(0, 10, 5), Span(150, 15, 50)]


def test_layout_clamps_end_and_rejects_start_past_eof():
    assert layout([(90, 200)], 100) == [Span(90, 0, 10)]
    with pytest.raises(InvalidInput):
        layout([(100, 110)], 100)
    with pytest.raises(InvalidInput):
        layout([(5, None)], None)


# -------------------------------------------------------------------- coverage


def test_coverage_merges_and_reports():
    cov = Coverage()
    cov.add(10, 20)
    cov.add(0, 5)
    assert cov.prefix() == 5
    cov.add(5, 10)
    assert cov.intervals() == [(0, 20)]
    cov.add(30, 40)
    cov.add(25, 31)
    assert cov.intervals() == [(0, 20), (25, 40)]
    assert cov.total() == 35
    assert list(cov.missing(0, 50)) == [(20, 25), (40, 50)]
    assert list(cov.missing(2, 18)) == []
    assert cov.covers(26, 39) and not cov.covers(19, 26)
    cov.add(7, 7)
    assert cov.intervals() == [(0, 20), (25, 40)]


def test_coverage_from_intervals():
    assert Coverage([(5, 10), (0, 5)]).intervals() == [(0, 10)]


# ---------------------------------------------------------------------- planning


def _covered_once(fetches: list[Fetch], size: int) -> bool:
    cov = Coverage()
    for f in fetches:
        assert f.length is not None
        assert Coverage(cov.intervals()).covers(f.start, f.start + f.length) is False
        cov.add(f.start, f.start + f.length)
    return cov.intervals() == [(0, size)] and sum(f.length or 0 for f in fetches) == size


def test_plan_segments_one_long_piece_each_then_a_short_tail():
    size = 256 << 20
    fetches = plan_segments([Span(0, 0, size)], Coverage(), 4)
    lengths = [f.length for f in fetches]
    assert len(fetches) == 8
    assert max(lengths[:4]) - min(lengths[:4]) <= 1 and max(lengths[4:]) - min(lengths[4:]) <= 1  # type: ignore
    assert sum(lengths[4:]) == size // TAIL_SHARE  # type: ignore[arg-type]
    assert min(lengths[:4]) > 4 * max(lengths[4:])  # type: ignore[type-var,operator]
    assert [f.start for f in fetches] == sorted(f.start for f in fetches)  # in file order: the hash follows
    assert _covered_once(fetches, size)


def test_plan_segments_caps_head_pieces_in_whole_rounds():
    size = 1 << 30
    fetches = plan_segments([Span(0, 0, size)], Coverage(), 4)
    head, tail = fetches[:-4], fetches[-4:]
    assert len(head) == 16 and all((f.length or 0) <= MAX_HEAD_PIECE for f in head)
    assert sum(f.length or 0 for f in tail) == size // TAIL_SHARE
    assert _covered_once(fetches, size)


def test_plan_segments_small_or_single():
    assert [f.length for f in plan_segments([Span(0, 0, 10 << 20)], Coverage(), 4)] == [(10 << 20) // 4] * 4
    assert [f.length for f in plan_segments([Span(0, 0, 100)], Coverage(), 4)] == [100]
    assert [(f.start, f.end) for f in plan_segments([Span(0, 0, 100 << 20)], Coverage(), 1)] == [(0, (100 << 20) - 1)]
    assert plan_segments([Span(0, 0, None)], Coverage([(0, 7)]), 4) == [Fetch(7, None, (Span(7, 7, None),))]
    assert plan_segments([Span(0, 0, 100)], Coverage([(0, 100)]), 4) == []
    assert MIN_PIECE == 1 << 20


def test_plan_segments_resume_fetches_only_the_missing_bytes():
    size = 256 << 20
    have = Coverage([(0, 100 << 20), (150 << 20, 160 << 20)])
    fetches = plan_segments([Span(0, 0, size)], have, 4)
    got = Coverage(have.intervals())
    for f in fetches:
        assert f.length is not None and have.covers(f.start, f.start + f.length) is False
        assert next(have.missing(f.start, f.start + f.length)) == (f.start, f.start + f.length)  # nothing twice
        got.add(f.start, f.start + f.length)
    assert got.intervals() == [(0, size)]
    assert sum(f.length or 0 for f in fetches) == size - have.total()


def test_plan_segments_keeps_ranges_and_their_destinations():
    spans = layout([(50 << 20, (80 << 20) - 1), (0, (10 << 20) - 1)], 100 << 20)
    fetches = plan_segments(spans, Coverage(), 2, merge_gap=0)
    placed = sorted((s.src, s.dst, s.length) for f in fetches for s in f.spans)
    assert sum(s[2] or 0 for s in placed) == 40 << 20
    for src, dst, _ in placed:
        assert (src >= 50 << 20 and dst == src - (50 << 20)) or (src < 10 << 20 and dst == src + (30 << 20))


def test_plan_whole_file_in_pieces():
    fetches = plan_fetches([Span(0, 0, 100)], Coverage(), piece=30)
    assert [(f.start, f.end) for f in fetches] == [(0, 24), (25, 49), (50, 74), (75, 99)]
    assert all(f.spans == (Span(f.start, f.start, f.length),) for f in fetches)


def test_plan_skips_what_is_on_disk():
    cov = Coverage([(0, 40), (60, 70)])
    fetches = plan_fetches([Span(0, 0, 100)], cov, piece=1000)
    assert [(f.start, f.end) for f in fetches] == [(40, 59), (70, 99)]
    assert plan_fetches([Span(0, 0, 100)], Coverage([(0, 100)]), piece=10) == []


def test_plan_merges_neighbouring_ranges_within_gap_and_piece():
    spans = layout([(0, 9), (10, 19), (25, 29), (1000, 1009)], 2000)
    fetches = plan_fetches(spans, Coverage(), piece=100, merge_gap=5)
    assert [(f.start, f.end) for f in fetches] == [(0, 29), (1000, 1009)]
    assert [s.dst for s in fetches[0].spans] == [0, 10, 20]
    no_gap = plan_fetches(spans, Coverage(), piece=100, merge_gap=0)
    assert [(f.start, f.end) for f in no_gap] == [(0, 19), (25, 29), (1000, 1009)]


def test_plan_open_ended_resumes_after_prefix():
    fetches = plan_fetches([Span(0, 0, None)], Coverage([(0, 1234)]), piece=10)
    assert fetches == [Fetch(1234, None, (Span(1234, 1234, None),))]


def test_plan_out_of_order_ranges_keep_their_destinations():
    spans = layout([(50, 59), (0, 9)], 100)
    fetches = plan_fetches(spans, Coverage([(0, 5)]), piece=100, merge_gap=100)
    assert len(fetches) == 1
    assert fetches[0].start == 0 and fetches[0].end == 59
    assert sorted((s.src, s.dst, s.length) for s in fetches[0].spans) == [(0, 10, 10), (55, 5, 5)]
