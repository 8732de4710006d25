"""``earthkeep areas`` and ``earthkeep nightlights`` command groups (SQLite catalog in tmp_path)."""

import json

import pytest
from typer.testing import CliRunner

from earthkeep.cli import areas, common, nightlights

SQUARE = {"type": "Feature", "properties": {"name": "Nairobi"},
          "geometry": {"type": "Polygon", "coordinates": [[[36.5, -1.5], [37, -1.5], [37, -1], [36.5, -1.5]]]}}


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/c.db")
    monkeypatch.setenv("EARTHKEEP_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    common.set_config_file(None)
    yield CliRunner()
    common.set_config_file(None)


def test_add_list_show_and_refuse(runner, tmp_path):
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps(SQUARE))
    r = runner.invoke(areas.app, ["add", str(path)])
    assert r.exit_code == 0, r.output
    assert "area 1 'Nairobi'" in r.output
    assert "Nairobi" in runner.invoke(areas.app, ["list"]).output
    assert '"type": "Feature"' in runner.invoke(areas.app, ["show", "1"]).output
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}))
    r = runner.invoke(areas.app, ["add", str(bad)])
    assert r.exit_code == 1 and "Self-intersection" in r.output  # the file was read: its content is refused
    assert runner.invoke(areas.app, ["add", str(bad), "--repair"]).exit_code == 0
    r = runner.invoke(nightlights.app, ["results", "1", "--json"])
    assert r.exit_code == 0 and '"timeseries": []' in r.output
    r = runner.invoke(nightlights.app, ["results", "99"])
    assert r.exit_code == 1 and "no area 99" in r.output
