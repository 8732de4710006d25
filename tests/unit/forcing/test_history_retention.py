"""The analysis series and its gaps; the retention plan (pure)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from earthkeep.config import ForcingSettings
from earthkeep.forcing.history import gaps, series_files
from earthkeep.forcing.retention import Held, plan_retention
from earthkeep.forcing.settings import ForcingConfig, ForcingSourcesSettings

NOW = datetime(2024, 1, 8, 7, 30, tzinfo=UTC)


def _cfg(**seed) -> ForcingConfig:
    return ForcingConfig(ForcingSettings(**seed), ForcingSourcesSettings(gfs_mirrors=["aws", "nomads"]))


def test_series_is_continuous_every_three_hours_over_history() -> None:
    files = series_files(_cfg(historical_days=7), NOW)
    valid = [f.valid_time for f in files]
    assert valid[0] >= NOW - timedelta(days=7) and files[-1].cycle == datetime(2024, 1, 8, 6, tzinfo=UTC)
    assert all(b - a == timedelta(hours=3) for a, b in itertools.pairwise(valid))
    assert {f.hour for f in files} == {0, 3} and len(files) == 2 * 4 * 7


def test_gap_reasons() -> None:
    files = series_files(_cfg(historical_days=1), NOW)
    present = {f.file_id for f in files[2:-4]}
    errors = {files[0].file_id: ("aws: 404 not found", 3)}
    found = {g.file_id: g for g in gaps(files, present, errors, now=NOW, mirrors=["aws", "nomads"])}
    assert "failed after 3 attempt(s): aws: 404" in found[files[0].file_id].reason
    assert found[files[1].file_id].reason.startswith("not collected yet")
    assert found[files[-1].file_id].reason == "cycle may still be publishing upstream"
    old = gaps(files[:1], set(), {}, now=NOW + timedelta(days=30), mirrors=["nomads"])
    assert "older than every configured mirror keeps" in old[0].reason


def _held(cycle: datetime, hour: int, collection: str = "gfs-wind") -> Held:
    return Held(collection, f"{cycle:%Y%m%d%H}.f{hour:03d}", cycle + timedelta(hours=hour), cycle, hour,
                (f"k/{cycle:%Y%m%d%H}.{hour}",), 10)


def test_plan_deletes_by_valid_time_and_keeps_the_latest_complete_forecast() -> None:
    complete = datetime(2024, 1, 1, 0, tzinfo=UTC)
    partial = complete + timedelta(hours=6)
    old = complete - timedelta(hours=6)
    held = [_held(c, h) for c in (old, complete) for h in (0, 3, 6)] + [_held(partial, 0)]
    held.append(_held(datetime(2023, 12, 31, tzinfo=UTC), 0, "cmems-currents"))
    plan = plan_retention(held, now=complete + timedelta(days=30), max_age_days=14, expected_hours=[0, 3, 6])
    assert {h.item_id for h in plan.protected} == {f"2024010100.f00{h}" for h in (0, 3, 6)} | {"2023123100.f000"}
    assert {h.item_id for h in plan.delete} == {f"2023123118.f00{h}" for h in (0, 3, 6)} | {"2024010106.f000"}
    assert plan.stats()["bytes"] == 40 and plan.latest["gfs-wind"] == complete.isoformat()
    young = plan_retention(held, now=complete + timedelta(days=1), max_age_days=14, expected_hours=[0, 3, 6])
    assert young.delete == [] and young.kept == len(held)


def test_plan_by_valid_time_not_creation_time() -> None:
    cycle = datetime(2024, 1, 1, tzinfo=UTC)
    long_range = Held("gfs-wind", "x", cycle + timedelta(days=5), cycle - timedelta(days=1), 120, ("k",), 1)
    newest = [_held(cycle, h) for h in (0, 3, 6)]
    plan = plan_retention([long_range, *newest], now=cycle + timedelta(days=6), max_age_days=2,
                          expected_hours=[0, 3, 6])
    assert plan.delete == [] and plan.kept == 1  # the old run's f120 is valid until day 5
