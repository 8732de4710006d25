"""NOAA GFS on its public mirrors: which cycle is complete, and which bytes of a file to fetch.

The provider is data: the mirrors in priority order (base URLs overridable by
settings, so the testbed can stand in), the file name template that formats and
parses, and the date the archive layout changed. The code below only plans:
it asks for the inventories of a cycle (an hour is published once its ``.idx``
is; the caller fetches them through the transfer engine and keeps their text
for the plans), and turns an inventory into byte ranges of the wanted messages
(adjacent ranges merged, the last message of a file open-ended). The engine
fetches.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from earthkeep.errors import IntegrityError, InvalidInput, NotFound
from earthkeep.transfer.idx import ByteRange, IdxEntry, byte_ranges, merge_adjacent, parse_idx, select

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Mirror:
    """One place GFS is published; ``keeps_days`` is how far back it goes (None: the whole archive)."""

    name: str
    base_url: str
    keeps_days: int | None

    def keeps(self, cycle: datetime, now: datetime) -> bool:
        """True when the mirror may still hold ``cycle`` at ``now``."""
        return self.keeps_days is None or now - cycle <= timedelta(days=self.keeps_days)


MIRRORS: dict[str, Mirror] = {  # priority order
    "aws": Mirror("aws", "https://noaa-gfs-bdp-pds.s3.amazonaws.com", None),
    "nomads": Mirror("nomads", "https://nomads.ncep.noaa.gov/pub/data/nccf/com/gfs/prod", 10),
    "google": Mirror("google", "https://storage.googleapis.com/global-forecast-system", None),
}

CYCLE_HOURS = (0, 6, 12, 18)
# The "atmos" directory appeared with GFS v16 (first cycle 2021-03-22 12 UTC).
LAYOUTS: tuple[tuple[datetime, str], ...] = (
    (
        datetime(2021, 3, 22, 12, tzinfo=UTC),
        "gfs.{cycle:%Y%m%d}/{cycle:%H}/atmos/gfs.t{cycle:%H}z.pgrb2.{grid}.f{hour:03d}",
    ),
    (datetime.min.replace(tzinfo=UTC), "gfs.{cycle:%Y%m%d}/{cycle:%H}/gfs.t{cycle:%H}z.pgrb2.{grid}.f{hour:03d}"),
)
FILE_ID = re.compile(r"^gfs\.(?P<date>\d{8})\.(?P<cycle>\d{2})\.(?P<grid>\dp\d\d)\.f(?P<hour>\d{3})$")
STORE_PREFIX = "forcing/gfs"


@dataclass(frozen=True, order=True)
class GfsFile:
    """One forecast hour of one cycle on one grid."""

    cycle: datetime
    hour: int
    grid: str = "0p25"

    def __post_init__(self) -> None:
        if self.cycle.tzinfo is None:
            raise InvalidInput("GFS cycles are timezone-aware UTC datetimes")
        if self.cycle.hour not in CYCLE_HOURS or self.cycle.minute or self.cycle.second:
            raise InvalidInput(f"GFS cycle {self.cycle:%Y-%m-%d %H:%M} is not at 00, 06, 12 or 18 UTC")
        if not 0 <= self.hour <= 384:
            raise InvalidInput(f"forecast hour {self.hour} is outside 0..384")

    @property
    def path(self) -> str:
        """Path under a mirror's base URL, in the layout of the cycle's date."""
        template = next(t for since, t in LAYOUTS if self.cycle >= since)
        return template.format(cycle=self.cycle, grid=self.grid, hour=self.hour)

    @property
    def file_id(self) -> str:
        """``gfs.YYYYMMDD.HH.<grid>.fFFF``: the catalog item id and claim name."""
        return f"gfs.{self.cycle:%Y%m%d}.{self.cycle:%H}.{self.grid}.f{self.hour:03d}"

    @property
    def valid_time(self) -> datetime:
        return self.cycle + timedelta(hours=self.hour)

    @property
    def store_key(self) -> str:
        """Where the subset is kept: ``forcing/gfs/gfs.YYYYMMDD/HH/gfs.tHHz.pgrb2.<grid>.fFFF.grib2``."""
        return (
            f"{STORE_PREFIX}/gfs.{self.cycle:%Y%m%d}/{self.cycle:%H}/gfs.t{self.cycle:%H}z.pgrb2.{self.grid}"
            f".f{self.hour:03d}.grib2"
        )

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/{self.path}"

    def idx_url(self, base_url: str) -> str:
        return self.url(base_url) + ".idx"

    @classmethod
    def parse(cls, file_id: str) -> GfsFile:
        """The file named by :attr:`file_id`."""
        m = FILE_ID.match(file_id)
        if not m:
            raise InvalidInput(f"{file_id!r} is not a GFS file id like gfs.20240101.00.0p25.f003")
        cycle = datetime.strptime(m["date"] + m["cycle"], "%Y%m%d%H").replace(tzinfo=UTC)
        return cls(cycle, int(m["hour"]), m["grid"])


class Inventories(Protocol):
    """What planning needs of its caller: ``inventory(url)``, the text of an ``.idx``, raising NotFound on 404."""

    async def inventory(self, url: str) -> str: ...


def floor_cycle(t: datetime) -> datetime:
    """The newest cycle start at or before ``t``."""
    t = t.astimezone(UTC)
    return t.replace(hour=t.hour - t.hour % 6, minute=0, second=0, microsecond=0)


def candidate_cycles(now: datetime, count: int) -> list[datetime]:
    """The ``count`` cycles up to ``now``, newest first."""
    newest = floor_cycle(now)
    return [newest - timedelta(hours=6 * i) for i in range(count)]


def mirrors_for(cycle: datetime, mirrors: Mapping[str, str], now: datetime) -> dict[str, str]:
    """The mirrors (name -> base URL) that may still hold ``cycle``; the rolling ones drop out."""
    return {name: url for name, url in mirrors.items() if MIRRORS[name].keeps(cycle, now)}


async def has_idx(inventories: Inventories, base_url: str, f: GfsFile) -> bool:
    """True when the mirror publishes ``f``'s inventory (the file is complete once its .idx is there)."""
    try:
        await inventories.inventory(f.idx_url(base_url))
    except NotFound:
        return False
    return True


async def cycle_complete(
    inventories: Inventories, base_url: str, cycle: datetime, hours: Sequence[int], grid: str, *, concurrency: int = 8
) -> bool:
    """True when every expected hour's inventory is on the mirror (the last hour is asked first)."""
    files = [GfsFile(cycle, h, grid) for h in sorted(hours)]
    if not await has_idx(inventories, base_url, files[-1]):
        return False
    gate = asyncio.Semaphore(concurrency)

    async def one(f: GfsFile) -> bool:
        async with gate:
            return await has_idx(inventories, base_url, f)

    return all(await asyncio.gather(*(one(f) for f in files[:-1])))


async def latest_complete_cycle(
    inventories: Inventories,
    mirrors: Mapping[str, str],
    hours: Sequence[int],
    grid: str,
    *,
    now: datetime,
    lookback: int,
) -> tuple[datetime, str] | None:
    """The newest cycle some mirror holds completely, and that mirror's name; None when there is none."""
    for cycle in candidate_cycles(now, lookback):
        for name, url in mirrors_for(cycle, mirrors, now).items():
            if await cycle_complete(inventories, url, cycle, hours, grid):
                log.info("gfs.latest_complete", cycle=cycle.isoformat(), mirror=name)
                return cycle, name
    return None


@dataclass(frozen=True)
class RangePlan:
    """The bytes of one file to fetch: merged ranges, and the messages they hold."""

    ranges: list[ByteRange]
    messages: list[IdxEntry]
    inventory: list[IdxEntry]

    @property
    def known_size(self) -> int | None:
        """Bytes to fetch when no range is open-ended."""
        total = 0
        for first, last in self.ranges:
            if last is None:
                return None
            total += last - first + 1
        return total

    def subset_idx(self) -> str:
        """The ``.idx`` of the fetched file (the ranges concatenated): same lines, messages renumbered
        from 1, offsets where each message now starts."""
        starts: dict[int, int] = {}
        position = 0
        for first, last in self.ranges:
            starts[first] = position
            position += 0 if last is None else last - first + 1
        lines, number, previous = [], 0, None
        for entry in self.messages:
            first = max(f for f, _ in self.ranges if f <= entry.offset)
            offset = starts[first] + entry.offset - first
            number += int(offset != previous)
            previous = offset
            label = f"{number}.{entry.part}" if entry.part is not None else str(number)
            lines.append(f"{label}:{offset}:{entry.line.split(':', 2)[2]}\n")
        return "".join(lines)


def plan_ranges(idx_text: str, patterns: Sequence[str], *, where: str = "inventory") -> RangePlan:
    """Byte ranges of the messages matching ``patterns`` in an ``.idx``; each pattern must match.

    Raises :class:`IntegrityError` for an inventory that does not parse or lacks a wanted field.
    """
    try:
        entries = parse_idx(idx_text)
    except InvalidInput as exc:
        raise IntegrityError(f"{where}: {exc}") from exc
    chosen = select(entries, patterns)
    for pattern in patterns:
        if not select(chosen, [pattern]):
            raise IntegrityError(f"{where}: no message matches {pattern!r}; the file lacks a wanted field")
    return RangePlan(merge_adjacent(byte_ranges(entries, chosen)), chosen, entries)
