"""Turn "these output bytes are still missing" into a list of HTTP range requests.

Pure functions over :mod:`earthkeep.transfer.ranges`: the engine asks for a
plan, runs it, records what landed in a :class:`Coverage`, and on resume asks
again with the coverage it saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from earthkeep.transfer.ranges import ByteRange, Coverage, Span, split_segments

MIN_PIECE = 1 << 20
MAX_PIECE = 32 << 20
HASHED_MAX_PIECE = 8 << 20


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


def piece_size(total: int, segments: int, *, hashed: bool = False) -> int:
    """Size of one request: whole missing runs for one segment, else 1..32 MiB pieces.

    Pieces smaller than ``total / segments`` let the segments share the work
    evenly to the end. When the download is hashed as it goes, pieces stay at
    8 MiB or less so that the hash follows closely and little is left at the end.
    """
    if segments <= 1:
        return max(total, 1)
    share = -(-total // segments)
    return max(MIN_PIECE, min(HASHED_MAX_PIECE if hashed else MAX_PIECE, share))


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
