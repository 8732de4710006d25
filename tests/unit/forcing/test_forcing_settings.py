"""The forcing settings: GFS mirrors, box and hours from the environment, the seed cron names."""

from __future__ import annotations

import pytest

from earthkeep.config import ConfigError
from earthkeep.forcing.domain import schedules
from earthkeep.forcing.settings import ForcingConfig, ForcingSettings, ForcingSourcesSettings
from earthkeep.settings import load_settings


def test_sources_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCING_GFS_MIRRORS", "nomads,aws")
    monkeypatch.setenv("FORCING_BBOX", "-10,50,10,62.5")
    monkeypatch.setenv("FORCING_GFS_AWS_URL", "http://127.0.0.1:8080/")
    monkeypatch.setenv("FORCING_ANALYSIS_HOURS", "3,0")
    s = ForcingSourcesSettings()
    assert s.mirror_urls() == {"nomads": "https://nomads.ncep.noaa.gov/pub/data/nccf/com/gfs/prod",
                               "aws": "http://127.0.0.1:8080"}
    assert s.bbox == [-10.0, 50.0, 10.0, 62.5] and s.analysis_hours == [0, 3]
    assert ForcingConfig(ForcingSettings(), s).forecast_hours == list(range(0, 121, 3))  # 41 files
    monkeypatch.setenv("FORCING_GFS_MIRRORS", "ftp")
    with pytest.raises(ValueError, match="unknown GFS mirrors"):
        ForcingSourcesSettings()


def test_schedules_use_the_seed_cron_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTION_SCHEDULE", "15 */3 * * *")
    by_name = {s.name: s for s in schedules(load_settings())}
    assert by_name["forcing-collect"].cron == "15 */3 * * *" and by_name["forcing-collect"].kind == "forcing.collect"
    assert by_name["forcing-cleanup"].cron == "0 2 * * *" and by_name["forcing-cleanup"].kind == "forcing.cleanup"
    monkeypatch.setenv("CLEANUP_SCHEDULE", "every night")
    with pytest.raises(ConfigError, match="CLEANUP_SCHEDULE"):
        load_settings()
