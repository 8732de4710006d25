"""The continuous 3-hourly wind series over ``HISTORICAL_DAYS``: what it needs, what is missing, and why.

The series is made of the analysis hours of every 6-hourly cycle
(``FORCING_ANALYSIS_HOURS``, default f000 and f003): cycle ``C`` covers the
valid times ``C`` and ``C+3 h``, so consecutive cycles tile time every 3 hours
with the freshest possible data. (f000 alone would be 6-hourly; GFS's own
analysis files ``gfs.tHHz.pgrb2.0p25.anl`` hold the same fields as f000.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from earthkeep.forcing.settings import ForcingConfig
from earthkeep.scheduler import parse_cron
from earthkeep.sources.gfs import MIRRORS, GfsFile, floor_cycle

PUBLISH_DELAY = timedelta(hours=6)  # GFS needs ~3.5-5 h to publish a cycle's 120 h


@dataclass(frozen=True)
class Gap:
    """A file of the series that is not in the catalog, and why."""

    file_id: str
    valid_time: datetime
    reason: str
    attempts: int = 0


def series_files(cfg: ForcingConfig, now: datetime, *, newest: datetime | None = None) -> list[GfsFile]:
    """The files of the analysis series from ``now - HISTORICAL_DAYS`` to ``newest`` (default: the
    newest cycle at or before ``now``), oldest first."""
    grid = cfg.sources.gfs_grid
    newest = floor_cycle(newest or now)
    cycle = floor_cycle(now - timedelta(days=cfg.seed.historical_days))
    if cycle < now - timedelta(days=cfg.seed.historical_days):
        cycle += timedelta(hours=6)
    files: list[GfsFile] = []
    while cycle <= newest:
        files.extend(GfsFile(cycle, h, grid) for h in cfg.sources.analysis_hours)
        cycle += timedelta(hours=6)
    return files


@dataclass(frozen=True)
class Outlook:
    """What the collections ahead will fetch; a gap's reason follows from it.

    A collection takes the latest complete cycle's ``forecast_hours`` and, as
    history, the analysis files of the cycles before it that lie inside
    ``HISTORICAL_DAYS`` of its own start and that a mirror still keeps.
    """

    mirrors: tuple[str, ...]
    forecast_hours: frozenset[int]
    historical_days: int
    next_collection: datetime  # the next scheduled collection (``COLLECTION_SCHEDULE``)

    @classmethod
    def of(cls, cfg: ForcingConfig, now: datetime) -> Outlook:
        nxt = parse_cron(cfg.seed.collection_schedule).get_next_fire_time(None, now)
        return cls(tuple(cfg.sources.gfs_mirrors), frozenset(cfg.forecast_hours), cfg.seed.historical_days,
                   nxt or now)

    def window_start(self) -> datetime:
        """The oldest cycle start that the next collection's history still covers."""
        return self.next_collection - timedelta(days=self.historical_days)


def gaps(files: Sequence[GfsFile], present: set[str], errors: dict[str, tuple[str, int]], *, now: datetime,
         outlook: Outlook) -> list[Gap]:
    """The files of ``files`` not in ``present``, each with a reason a person can act on."""
    latest = floor_cycle(now - PUBLISH_DELAY)  # the cycle the next collection takes as its forecast
    out = []
    for f in files:
        if f.file_id in present:
            continue
        out.append(Gap(f.file_id, f.valid_time, _reason(f, errors.get(f.file_id), now, latest, outlook),
                       errors.get(f.file_id, ("", 0))[1]))
    return out


def _reason(f: GfsFile, error: tuple[str, int] | None, now: datetime, latest: datetime, outlook: Outlook) -> str:
    if error is not None:
        return f"failed after {error[1]} attempt(s): {error[0]}"
    if f.cycle > latest:
        return "cycle may still be publishing upstream"
    never = _never_filled(f, now, outlook)
    if never is not None:
        return f"{never}: no collection will fill it"
    if f.cycle < latest:
        return "not collected yet: the next collection's history backfill fills it"
    if f.hour in outlook.forecast_hours:
        return "not collected yet: the next collection of the latest cycle's forecast fills it"
    return (f"not collected yet: f{f.hour:03d} is not among the forecast hours collected with the latest cycle "
            "(FORECAST_HOURS, FORECAST_INTERVAL_HOURS); history backfill fills it once a newer cycle is complete")


def _never_filled(f: GfsFile, now: datetime, outlook: Outlook) -> str | None:
    """Why no collection from now on fetches ``f``, or None when one will."""
    mirrors = ", ".join(outlook.mirrors)
    if not any(MIRRORS[m].keeps(f.cycle, now) for m in outlook.mirrors):
        return f"older than every configured mirror keeps ({mirrors})"
    if f.cycle < outlook.window_start():
        return (f"leaves the HISTORICAL_DAYS ({outlook.historical_days}) window before the next collection "
                f"({outlook.next_collection:%Y-%m-%d %H:%M} UTC)")
    if not any(MIRRORS[m].keeps(f.cycle, outlook.next_collection) for m in outlook.mirrors):
        return f"every configured mirror ({mirrors}) drops it before the next collection " \
               f"({outlook.next_collection:%Y-%m-%d %H:%M} UTC)"
    return None
