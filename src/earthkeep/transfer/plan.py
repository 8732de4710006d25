"""Turn "these output bytes are still missing" into a list of HTTP range requests.

Pure functions over :mod:`earthkeep.transfer.ranges`: the engine asks for a
plan, runs it, records what landed in a :class:`Coverage`, and on resume asks
again with the coverage it saved.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from earthkeep.transfer.ranges import ByteRange, Coverage, Span, split_segments

MIN_PIECE = 1 << 20
MAX_HEAD_PIECE = 64 << 20
TAIL_SHARE = 6


@dataclass(frozen=True)
class Fetch:
    """One HTTP request: remote bytes ``start``..``end`` (inclusive, ``None`` = to EOF).

    ``spans`` say where the received bytes go in the output file; bytes that no
    span wants (the gap between two merged ranges) are read and dropped.
    """

    start: int
    end: int | None
    spans: tuple[Span, ...]

    @property
    def length(self) -> int | None:
        """Number of bytes asked for, or ``None`` for an open-ended request."""
        return None if self.end is None else self.end - self.start + 1

    def byte_range(self) -> ByteRange:
        """The request's range in HTTP's inclusive form."""
        return (self.start, self.end)


def plan_segments(spans: Sequence[Span], coverage: Coverage, segments: int, *, merge_gap: int = 0) -> list[Fetch]:
    """The requests that ``segments`` connections run, in order, to fetch every byte of ``spans`` not in ``coverage``.

    Every request costs its connection one idle round trip (40 ms against the
    0.34 s of an 8 MiB piece at 200 Mbit/s), so requests are few and long: the
    head of the missing bytes is one piece per segment (of at most
    :data:`MAX_HEAD_PIECE`, in whole rounds of ``segments`` pieces), the last
    ``1 / TAIL_SHARE`` one short piece per segment. The running hash can only
    follow the written prefix, so it catches up with the head while the tail
    arrives; the short tail pieces leave little to hash at the end. Small
    downloads (a tail under 1 MiB a segment) get one piece per segment.
    """
    if segments <= 1 or any(s.length is None for s in spans):
        return plan_fetches(spans, coverage, piece=sys.maxsize, merge_gap=merge_gap)
    missing = sorted(iv for s in spans if s.length for iv in coverage.missing(s.dst, s.dst + s.length))
    left = sum(b - a for a, b in missing)
    tail = left // TAIL_SHARE
    if tail < segments * MIN_PIECE:
        return plan_fetches(spans, coverage, piece=max(MIN_PIECE, -(-left // segments)), merge_gap=merge_gap)
    head = left - tail
    boundary = _offset_after(missing, head)
    pieces = segments * -(-head // (segments * MAX_HEAD_PIECE))
    head_cov, tail_cov = Coverage(coverage.intervals()), Coverage(coverage.intervals())
    head_cov.add(boundary, sys.maxsize)
    tail_cov.add(0, boundary)
    first = plan_fetches(spans, head_cov, piece=-(-head // pieces), merge_gap=merge_gap)
    return first + plan_fetches(spans, tail_cov, piece=-(-tail // segments), merge_gap=merge_gap)


def _offset_after(missing: Sequence[tuple[int, int]], count: int) -> int:
    """The output offset where the first ``count`` bytes of ``missing`` (sorted, disjoint) end."""
    for a, b in missing:
        if count <= b - a:
            return a + count
        count -= b - a
    return missing[-1][1]


def plan_fetches(spans: Sequence[Span], coverage: Coverage, *, piece: int, merge_gap: int = 0) -> list[Fetch]:
    """The requests that fetch every byte of ``spans`` not yet in ``coverage``.

    Missing runs are cut into pieces of at most ``piece`` bytes; neighbouring
    pieces (by remote offset) merge into one request while the hole between them
    is at most ``merge_gap`` bytes and the request stays within ``piece`` bytes.
    A span of unknown length gives one open-ended request that resumes after
    the covered prefix.
    """
    open_ended = [s for s in spans if s.length is None]
    if open_ended:
        span = open_ended[0]
        done = coverage.prefix() if span.dst == 0 else 0
        return [Fetch(span.src + done, None, (Span(span.src + done, span.dst + done, None),))]
    pieces = sorted(_missing_pieces(spans, coverage, piece), key=lambda s: (s.src, s.dst))
    fetches: list[Fetch] = []
    for sub in pieces:
        if fetches and _can_merge(fetches[-1], sub, piece, merge_gap):
            last = fetches[-1]
            end = max(last.end or 0, sub.src + (sub.length or 0) - 1)
            fetches[-1] = Fetch(last.start, end, (*last.spans, sub))
        else:
            fetches.append(Fetch(sub.src, sub.src + (sub.length or 0) - 1, (sub,)))
    return fetches


def _missing_pieces(spans: Sequence[Span], coverage: Coverage, piece: int) -> list[Span]:
    out: list[Span] = []
    for span in spans:
        assert span.length is not None
        for a, b in coverage.missing(span.dst, span.dst + span.length):
            count = -(-(b - a) // piece)
            for start, end in split_segments(b - a, count, min_segment=1, start=a):
                out.append(Span(span.src + (start - span.dst), start, end - start + 1))
    return out


def _can_merge(last: Fetch, sub: Span, piece: int, gap: int) -> bool:
    assert last.end is not None and sub.length is not None
    stop = max(last.end + 1, sub.src + sub.length)
    return sub.src <= last.end + 1 + gap and stop - last.start <= piece
