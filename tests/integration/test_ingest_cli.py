"""``earthkeep stations`` and ``earthkeep weather`` against a real catalog (SQLite)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from earthkeep.catalog.db import create_db_engine
from earthkeep.cli import stations, weather
from earthkeep.cli.common import set_config_file
from earthkeep.ingest.models import Station, validate_records
from earthkeep.ingest.simulator import Simulator
from earthkeep.ingest.writer import ObservationWriter

T0 = datetime(2024, 2, 1, tzinfo=UTC)


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    set_config_file(None)
    yield CliRunner(), url
    set_config_file(None)


def test_stations_and_weather_commands(cli):
    runner, url = cli
    r = runner.invoke(stations.app, ["add", "KSEA", "--name", "Seattle", "--latitude", "47.45",
                                     "--longitude", "-122.31", "--elevation", "131"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(stations.app, ["add", "BAD ID", "--name", "x", "--latitude", "0", "--longitude", "0"])
    assert r.exit_code == 2 and "pattern" in r.output
    assert "KSEA" in runner.invoke(stations.app, ["list"]).output

    sim = Simulator([Station(id="KSEA", name="Seattle", latitude=47.45, longitude=-122.31)], T0, step_s=600)
    good, _ = validate_records(sim.batch(300), known_station={"KSEA"})
    ObservationWriter(create_db_engine(url)).write(good)

    r = runner.invoke(weather.app, ["raw", "KSEA", "--limit", "5", "--json"])
    assert r.exit_code == 0, r.output
    page = json.loads(r.output)
    assert len(page["observations"]) == 5 and page["next"]
    r = runner.invoke(weather.app, ["aggregate", "KSEA", "--json"])
    assert json.loads(r.output)["count"] == 300
    r = runner.invoke(weather.app, ["timeseries", "KSEA", "--start", "2024-02-01T00:00:00Z",
                                    "--end", "2024-02-02T00:00:00Z", "--interval", "6h", "--json"])
    out = json.loads(r.output)
    assert out["source"] == "rollup" and [b["count"] for b in out["buckets"]] == [36, 36, 36, 36]
    r = runner.invoke(weather.app, ["timeseries", "KSEA", "--start", "2024-02-01T00:00:00Z",
                                    "--end", "2024-02-02T00:00:00Z", "--interval", "1h"])
    assert r.exit_code == 0 and "from rollup" in r.output
    r = runner.invoke(weather.app, ["timeseries", "KSEA", "--start", "2024-02-01T00:00:00Z",
                                    "--end", "2024-02-02T00:00:00Z", "--interval", "5x"])
    assert r.exit_code == 2 and "interval" in r.output
    r = runner.invoke(weather.app, ["retention"])
    assert r.exit_code == 0 and "deleted_raw" in r.output
