"""Shared helpers of the forcing integration tests: an emulated GFS tree served with faults, services."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from earthkeep.config import Settings
from earthkeep.forcing.settings import ForcingConfig, ForcingSourcesSettings, forcing_config
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.obstore import ObstoreStore
from earthkeep.testbed import gfs
from earthkeep.testbed.faults import FaultInjector
from earthkeep.testbed.fileserver import create_file_app
from earthkeep.testbed.runner import serve_app
from earthkeep.transfer.http import RetryPolicy

LATEST = datetime(2024, 1, 2, 0, tzinfo=UTC)
NOW = LATEST + timedelta(hours=7)
HOURS = [0, 3, 6]
HISTORY = [LATEST - timedelta(hours=6 * i) for i in range(1, 4)]  # 18, 12, 06 UTC of the day before


def naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None)


def write_gfs(root: Path, *, cycles: list[datetime] | None = None, complete: Any = True) -> None:
    """Cycles (default the latest and the three before) with HOURS at 1°, ccsds packing."""
    chosen = cycles or [LATEST, *HISTORY]
    plan = complete if isinstance(complete, bool) else {naive(c): v for c, v in complete.items()}
    gfs.write_tree(root, [naive(c) for c in chosen], HOURS, complete=plan, grid="1p00", packing="ccsds")


@contextlib.contextmanager
def gfs_server(root: Path) -> Iterator[tuple[str, FaultInjector]]:
    injector = FaultInjector(create_file_app(root))
    with serve_app(injector) as url:
        yield url, injector


def make_settings(db_url: str, tmp: Path, base_url: str, *, timeout_s: float = 2.0,
                  forcing: dict[str, Any] | None = None, **sources: Any) -> Settings:
    base = load_settings(
        catalog={"database_url": db_url},
        transfer={"work_dir": tmp / "partial", "retries": 2, "timeout_s": timeout_s},
        forcing={"historical_days": 1, "forecast_hours": 6, "forecast_interval_hours": 3, "max_data_age_days": 2,
                 **(forcing or {})},
    )
    src = ForcingSourcesSettings(gfs_mirrors=["aws"], gfs_aws_url=base_url, gfs_grid="1p00",
                                 gfs_concurrency=4, **sources)
    return Settings({**base.sections(), "forcing_sources": src}, None)


def open_services(db_url: str, tmp: Path, base_url: str, **options: Any) -> Services:
    return Services.open(make_settings(db_url, tmp, base_url, **options), store=ObstoreStore.local(tmp / "store"))


def config(services: Services) -> ForcingConfig:
    return forcing_config(services.settings)


FAST = RetryPolicy(base_s=0.01, max_s=0.05)


@dataclass
class Counts:
    requests: int
    grib_gets: int


def grib_gets(injector: FaultInjector, path_suffix: str = "") -> list[str]:
    """Paths of ranged GETs of GRIB files (not .idx) seen by the server."""
    return [r.path for r in injector.records
            if r.method == "GET" and r.range and not r.path.endswith(".idx") and r.path.endswith(path_suffix)]
