"""The analysis series and its gaps; the retention plan (pure)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from earthkeep.forcing.history import Outlook, gaps, series_files
from earthkeep.forcing.retention import Held, plan_retention
from earthkeep.forcing.settings import ForcingConfig, ForcingSettings, ForcingSourcesSettings

NOW = datetime(2024, 1, 8, 7, 30, tzinfo=UTC)


def _cfg(**seed) -> ForcingConfig:
    return ForcingConfig(ForcingSettings(**seed), ForcingSourcesSettings(gfs_mirrors=["aws", "nomads"]))


def test_series_is_continuous_every_three_hours_over_history() -> None:
    files = series_files(_cfg(historical_days=7), NOW)
    valid = [f.valid_time for f in files]
    assert valid[0] >= NOW - timedelta(days=7) and files[-1].cycle == datetime(2024, 1, 8, 6, tzinfo=UTC)
    assert all(b - a == timedelta(hours=3) for a, b in itertools.pairwise(valid))
    assert {f.hour for f in files} == {0, 3} and len(files) == 2 * 4 * 7


def _reasons(cfg: ForcingConfig, present: set[str] = frozenset(), errors=None, now: datetime = NOW) -> dict:
    files = series_files(cfg, now)
    return {g.file_id: g.reason for g in gaps(files, present, errors or {}, now=now, outlook=Outlook.of(cfg, now))}


def _id(cycle: datetime, hour: int) -> str:
    return next(f.file_id for f in series_files(_cfg(historical_days=30), NOW) if (f.cycle, f.hour) == (cycle, hour))


def test_gap_reasons() -> None:
    cfg = _cfg(historical_days=1)
    files = series_files(cfg, NOW)
    found = _reasons(cfg, {f.file_id for f in files[2:-4]}, {files[0].file_id: ("aws: 404 not found", 3)})
    assert "failed after 3 attempt(s): aws: 404" in found[files[0].file_id]
    assert found[files[1].file_id] == "not collected yet: the next collection's history backfill fills it"
    assert found[files[-1].file_id] == "cycle may still be publishing upstream"
    nomads = ForcingConfig(ForcingSettings(historical_days=1), ForcingSourcesSettings(gfs_mirrors=["nomads"]))
    later = NOW + timedelta(days=30)
    old = gaps(files[:1], set(), {}, now=later, outlook=Outlook.of(nomads, later))
    assert old[0].reason == "older than every configured mirror keeps (nomads): no collection will fill it"


def test_a_missing_file_of_the_latest_cycle_is_filled_by_the_next_collection_of_that_cycle() -> None:
    latest = datetime(2024, 1, 8, 0, tzinfo=UTC)  # the newest cycle published at 07:30
    found = _reasons(_cfg(historical_days=1))
    assert found[_id(latest, 0)] == "not collected yet: the next collection of the latest cycle's forecast fills it"
    assert found[_id(latest, 3)] == found[_id(latest, 0)]


def test_an_analysis_hour_outside_the_forecast_hours_waits_for_a_newer_cycle() -> None:
    latest = datetime(2024, 1, 8, 0, tzinfo=UTC)
    found = _reasons(_cfg(historical_days=1, forecast_interval_hours=6))  # f003 is not a forecast hour
    assert found[_id(latest, 0)] == "not collected yet: the next collection of the latest cycle's forecast fills it"
    assert found[_id(latest, 3)] == (
        "not collected yet: f003 is not among the forecast hours collected with the latest cycle "
        "(FORECAST_HOURS, FORECAST_INTERVAL_HOURS); history backfill fills it once a newer cycle is complete")


def test_files_no_collection_will_fill_say_so() -> None:
    daily = _cfg(historical_days=1, collection_schedule="0 0 * * *")  # next collection 2024-01-09 00:00
    found = _reasons(daily)
    assert found[_id(datetime(2024, 1, 7, 12, tzinfo=UTC), 0)] == (
        "leaves the HISTORICAL_DAYS (1) window before the next collection (2024-01-09 00:00 UTC): "
        "no collection will fill it")
    assert found[_id(datetime(2024, 1, 8, 0, tzinfo=UTC), 0)].startswith("not collected yet: the next collection")
    nomads = ForcingConfig(ForcingSettings(historical_days=11, collection_schedule="0 0 * * *"),
                           ForcingSourcesSettings(gfs_mirrors=["nomads"]))  # nomads keeps 10 days
    found = _reasons(nomads)
    assert found[_id(datetime(2023, 12, 29, 12, tzinfo=UTC), 0)] == (
        "every configured mirror (nomads) drops it before the next collection (2024-01-09 00:00 UTC): "
        "no collection will fill it")
    assert found[_id(datetime(2023, 12, 29, 6, tzinfo=UTC), 0)] == (
        "older than every configured mirror keeps (nomads): no collection will fill it")


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
