from pathlib import Path

import pytest

from earthkeep.config import mask_url
from earthkeep.errors import ConfigError
from earthkeep.settings import load_settings

SEED_ENV = {
    "DATABASE_URL": "postgresql://driftline:hunter2@db.example:5432/driftline",
    "S3_ENDPOINT": "http://minio:9000",
    "S3_ACCESS_KEY": "minioadmin",
    "S3_SECRET_KEY": "supersecret",
    "S3_BUCKET": "environmental-data",
    "HISTORICAL_DAYS": "5",
    "FORECAST_HOURS": "72",
    "FORECAST_INTERVAL_HOURS": "6",
    "COLLECTION_SCHEDULE": "30 */6 * * *",
    "CLEANUP_SCHEDULE": "0 3 * * *",
    "MAX_DATA_AGE_DAYS": "10",
    "VIIRS_RETENTION": "7",
    "NUM_GINA_CONNECTIONS": "6",
    "GINA_BACKFILL_DAYS": "3",
    "VIIRS_FACILITY": "UAFGINA",
    "MAILHOST": "smtp.example",
    "LOG_SENDER": "worker@example",
    "LOG_RECIPIENT": "ops@example",
    "LOG_LEVEL": "debug",
    "REDIS_URL": "redis://redis:6379/1",
    "COPERNICUS_USERNAME": "alice",
    "COPERNICUS_PASSWORD": "pw",
}


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in SEED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("EARTHKEEP_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_defaults_are_embedded(clean_env):
    s = load_settings()
    assert s.catalog.database_url.startswith("sqlite:///")
    assert s.store.s3_endpoint is None
    assert (s.forcing.historical_days, s.forcing.forecast_hours, s.forcing.forecast_interval_hours) == (7, 120, 3)
    assert s.forcing.collection_schedule == "0 */6 * * *"
    assert s.api.host == "127.0.0.1" and s.api.port == 8000


def test_seed_environment_names_are_accepted(clean_env):
    for k, v in SEED_ENV.items():
        clean_env.setenv(k, v)
    s = load_settings()
    assert s.catalog.database_url == SEED_ENV["DATABASE_URL"]
    assert s.store.s3_endpoint == "http://minio:9000"
    assert s.store.s3_secret_key.get_secret_value() == "supersecret"
    assert s.forcing.historical_days == 5 and s.forcing.forecast_hours == 72
    assert s.forcing.forecast_interval_hours == 6 and s.forcing.max_data_age_days == 10
    assert s.forcing.collection_schedule == "30 */6 * * *"
    assert s.granules.retention_days == 7 and s.granules.connections == 6
    assert s.granules.backfill_days == 3 and s.granules.facility == "uafgina"
    assert (s.mail.mailhost, s.mail.sender, s.mail.recipient) == ("smtp.example", "worker@example", "ops@example")
    assert s.log.level == "DEBUG"
    assert s.broker.redis_url == "redis://redis:6379/1"


def test_masked_hides_every_secret(clean_env):
    for k, v in SEED_ENV.items():
        clean_env.setenv(k, v)
    text = repr(load_settings().masked())
    for secret in ("hunter2", "supersecret", "minioadmin", "'pw'"):
        assert secret not in text
    assert "driftline:****@db.example" in text


def test_toml_sections_and_env_precedence(clean_env, tmp_path):
    cfg = tmp_path / "earthkeep.toml"
    cfg.write_text('[forcing]\nhistorical_days = 9\nFORECAST_HOURS = 48\n[api]\nport = 9001\n')
    s = load_settings()
    assert s.source == Path("earthkeep.toml")
    assert (s.forcing.historical_days, s.forcing.forecast_hours, s.api.port) == (9, 48, 9001)
    clean_env.setenv("HISTORICAL_DAYS", "2")
    assert load_settings().forcing.historical_days == 2


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("HISTORICAL_DAYS", "seven", "HISTORICAL_DAYS"),
        ("HISTORICAL_DAYS", "-1", "greater than or equal to 0"),
        ("COLLECTION_SCHEDULE", "every six hours", "cron"),
        ("COLLECTION_SCHEDULE", "61 * * * *", "COLLECTION_SCHEDULE"),
        ("VIIRS_FACILITY", "mars", "VIIRS_FACILITY"),
        ("DATABASE_URL", "mysql://x", "sqlite"),
        ("S3_ENDPOINT", "minio:9000", "http"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
    ],
)
def test_bad_values_fail_in_one_line_naming_the_variable(clean_env, name, value, expected):
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(name)
    assert expected in message


def test_broken_toml_is_a_config_error(clean_env, tmp_path):
    (tmp_path / "earthkeep.toml").write_text("[forcing\nhistorical_days = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()


def test_mask_url_without_password_is_unchanged():
    assert mask_url("sqlite:///./data/x.db") == "sqlite:///./data/x.db"
    assert mask_url("postgresql://u:p@h:5/db") == "postgresql://u:****@h:5/db"


def test_configuration_reference_in_docs_is_current():
    from pathlib import Path

    from earthkeep.settings import reference as reference_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text().strip() == reference_markdown().strip(), (
        "docs/configuration.md is stale: run `earthkeep config reference > docs/configuration.md`")
