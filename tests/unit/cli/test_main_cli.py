"""The CLI against a real embedded catalog in a temp dir."""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from earthkeep.cli.common import set_config_file
from earthkeep.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def embedded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "S3_ENDPOINT", "EARTHKEEP_CONFIG", "HISTORICAL_DAYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EARTHKEEP_LOG_FORMAT", "console")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    set_config_file(None)
    yield tmp_path
    set_config_file(None)


def run(*args):
    set_config_file(None)
    return runner.invoke(app, list(args))


def test_db_upgrade_creates_the_embedded_catalog(embedded):
    r = run("db", "upgrade")
    assert r.exit_code == 0, r.output
    assert (embedded / "data" / "earthkeep.db").is_file()
    assert "0001" in run("db", "current").output


def test_config_show_masks_secrets(monkeypatch):
    monkeypatch.setenv("S3_SECRET_KEY", "topsecret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw123@db/x")
    r = run("config", "show", "--json")
    assert r.exit_code == 0, r.output
    assert "topsecret" not in r.output and "pw123" not in r.output and "****" in r.output


def test_bad_setting_is_one_line_and_exit_2(monkeypatch):
    monkeypatch.setenv("HISTORICAL_DAYS", "lots")
    r = run("config", "show")
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "HISTORICAL_DAYS" in lines[0]


def test_keys_create_list_revoke():
    r = run("keys", "create", "--scope", "read,ingest", "--name", "station-7")
    assert r.exit_code == 0, r.output
    secret = r.output.strip().splitlines()[-1]
    assert secret.startswith("ek_")
    listed = run("keys", "list").output
    assert "station-7" in listed and secret not in listed
    assert run("keys", "revoke", secret[:10]).exit_code == 0
    assert run("keys", "create", "--scope", "superuser").exit_code == 2


def test_jobs_enqueue_list_cancel_retry():
    r = run("jobs", "enqueue", "fetch", "--payload", '{"url": "https://example.org/a.nc"}', "--dedupe-key", "a")
    assert r.exit_code == 0 and "job 1 queued" in r.output
    assert "already queued" in run("jobs", "enqueue", "fetch", "--dedupe-key", "a").output
    assert "pending" in run("jobs", "list").output
    assert "cancelled" in run("jobs", "cancel", "1").output
    assert run("jobs", "cancel", "1").exit_code == 1  # a runtime refusal, not a usage error
    assert "pending" in run("jobs", "retry", "1").output
    unknown = run("jobs", "enqueue", "teleport")
    assert unknown.exit_code == 2 and "known kinds" in unknown.output
    assert run("jobs", "enqueue", "fetch", "--payload", "[1]").exit_code == 2


def test_serve_rejects_unknown_roles():
    r = run("serve", "--role", "api,chef")
    assert r.exit_code == 2 and "--role" in r.output


# What the command line must not load to show its help or parse its settings: each of these is for
# the commands that use it (the catalog, geometry, downloads, the API), and every CLI run and every
# e2e subprocess would pay for it otherwise.
NOT_AT_START = ("sqlalchemy", "shapely", "pyproj", "psycopg", "numpy", "h5py", "httpx", "fastapi", "xarray",
                "rasterio", "eccodes", "apscheduler.schedulers")


def test_the_command_line_starts_and_reads_its_settings_without_the_heavy_libraries(embedded):
    code = ("import sys\n"
            "from earthkeep.cli.common import settings\n"
            "from earthkeep.cli.main import app\n"
            "settings()\n"
            f"print(','.join(m for m in {NOT_AT_START!r} if m in sys.modules))\n")
    env = {k: v for k, v in os.environ.items() if k != "EARTHKEEP_CONFIG"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                          cwd=embedded)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"importing the CLI and loading settings imported {done.stdout.strip()}"
