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


def gaps(files: Sequence[GfsFile], present: set[str], errors: dict[str, tuple[str, int]], *, now: datetime,
         mirrors: Sequence[str]) -> list[Gap]:
    """The files of ``files`` not in ``present``, each with a reason a person can act on."""
    out = []
    for f in files:
        if f.file_id in present:
            continue
        out.append(Gap(f.file_id, f.valid_time, _reason(f, errors.get(f.file_id), now, mirrors),
                       errors.get(f.file_id, ("", 0))[1]))
    return out


def _reason(f: GfsFile, error: tuple[str, int] | None, now: datetime, mirrors: Sequence[str]) -> str:
    if error is not None:
        return f"failed after {error[1]} attempt(s): {error[0]}"
    if now - f.cycle < PUBLISH_DELAY:
        return "cycle may still be publishing upstream"
    keeping = [m for m in mirrors if MIRRORS[m].keeps(f.cycle, now)]
    if not keeping:
        return f"older than every configured mirror keeps ({', '.join(mirrors)})"
    return "not collected yet (the next collection fills it)"
