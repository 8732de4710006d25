"""Pure parts of queries: intervals, settings names."""

import pytest

from earthkeep.errors import InvalidInput
from earthkeep.ingest.queries import parse_interval
from earthkeep.ingest.settings import IngestSettings


def test_intervals():
    assert [parse_interval(v) for v in ("30s", "5m", "1h", "1d", "2w", " 6H ")] == \
        [30, 300, 3600, 86400, 1209600, 21600]
    for bad in ("", "0m", "5", "1y", "m5", "-1h"):
        with pytest.raises(InvalidInput):
            parse_interval(bad)


def test_settings_environment_names(monkeypatch):
    monkeypatch.setenv("EARTHKEEP_INGEST_BROKER", "nats")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4333")
    monkeypatch.setenv("REDIS_URL", "")
    monkeypatch.setenv("EARTHKEEP_INGEST_RAW_RETENTION_DAYS", "30")
    s = IngestSettings()
    assert (s.broker, s.nats_url, s.redis_url, s.raw_retention_days) == ("nats", "nats://127.0.0.1:4333", None, 30)
