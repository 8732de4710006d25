"""``earthkeep granules``: the group's commands and ``tasks list`` on an embedded catalog."""

from __future__ import annotations

from typer.testing import CliRunner

from earthkeep.cli import common
from earthkeep.cli.granules import app, tasks_app
from earthkeep.granules import tasks
from earthkeep.runtime import Services
from earthkeep.settings import load_settings


def test_tasks_list_prints_the_queue(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/c.db"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("EARTHKEEP_STORE_DIR", str(tmp_path / "store"))
    common.set_config_file(None)
    svc = Services.open(load_settings())
    with svc.sessions.begin() as s:
        tasks.enqueue(s, product="btd", subject="/AVO/viirs/granule/btd", direction="ascending", orbit_slack=1,
                       data={"platform_name": "NOAA-20", "orbit_number": 4242, "start_time": "2024-01-01T00:00:00",
                             "end_time": "2024-01-01T00:01:25", "dataset": [{"uid": "a"}]})
    svc.close()
    result = CliRunner().invoke(tasks_app, ["list"])
    assert result.exit_code == 0, result.output
    assert "4242" in result.output and "NOAA-20" in result.output and "queued 1" in result.output
    common.set_config_file(None)


def test_granules_group_has_its_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    names = {n for n in ("mirror", "subscribe", "run", "elements", "retention") if n in result.output}
    assert {"mirror", "subscribe", "run", "elements", "retention"} <= names
