"""The CLI's contract, run as a user runs it (child processes): exit codes, stdout for results, quiet stderr.

0 success, 1 runtime failure, 2 usage error (documented in ``earthkeep.cli.common`` and docs/cli.md).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from earthkeep import __version__
from earthkeep.testbed.servers import free_port

CLI = [sys.executable, "-m", "earthkeep.cli.main"]
SQUARE = {"type": "Feature", "properties": {"name": "Nairobi"},
          "geometry": {"type": "Polygon", "coordinates": [[[36.5, -1.5], [37, -1.5], [37, -1], [36.5, -1.5]]]}}


@pytest.fixture
def home(tmp_path, monkeypatch):
    for name in ("DATABASE_URL", "S3_ENDPOINT", "EARTHKEEP_CONFIG", "EARTHKEEP_LOG_FORMAT", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/catalog.db")
    monkeypatch.setenv("EARTHKEEP_STORE_DIR", str(tmp_path / "store"))
    return tmp_path


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory) -> Path:
    """One migrated embedded catalog, copied into each test that needs one (a migration costs seconds)."""
    root = tmp_path_factory.mktemp("upgraded")
    r = subprocess.run([*CLI, "db", "upgrade"], cwd=root, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "DATABASE_URL": f"sqlite:///{root}/catalog.db"})
    assert r.returncode == 0, r.stderr
    return root / "catalog.db"


TERMINAL = ("COLUMNS", "LINES")  # a terminal's size (pytest-xdist's workers set 80 x 24): the CLI runs on a pipe


def ek(*args: str, cwd: Path, env: dict[str, str] | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k not in TERMINAL}
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**inherited, **(env or {})})


def tables(db: Path) -> set[str]:
    if not db.exists():
        return set()
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_read_only_commands_do_not_create_the_schema_and_say_what_to_do(home):
    for args in (["jobs", "list"], ["keys", "list"], ["areas", "list"], ["rescue", "status"], ["stations", "list"]):
        r = ek(*args, cwd=home)
        assert r.returncode == 1, (args, r.stderr)
        assert "earthkeep db upgrade" in r.stderr and r.stdout == ""
    assert tables(home / "catalog.db") == set()


def test_no_migration_or_library_lines_once_the_catalog_exists(home):
    assert ek("db", "upgrade", cwd=home).returncode == 0
    for args in (["jobs", "list"], ["keys", "create", "--scope", "read"], ["keys", "list"], ["areas", "list"]):
        r = ek(*args, cwd=home)
        assert r.returncode == 0, r.stderr
        assert r.stderr == "", (args, r.stderr)


def test_logs_are_json_on_a_pipe_and_human_on_request(home):
    a = ek("fetch", "http://127.0.0.1:9/x", cwd=home, env={"LOG_LEVEL": "DEBUG"})
    lines = [ln for ln in a.stderr.splitlines() if ln.startswith("{")]
    assert lines and all(json.loads(ln)["role"] == "cli" for ln in lines)
    b = ek("fetch", "http://127.0.0.1:9/x", cwd=home, env={"LOG_LEVEL": "DEBUG", "EARTHKEEP_LOG_FORMAT": "console"})
    assert not any(ln.startswith("{") for ln in b.stderr.splitlines())


@pytest.mark.parametrize(("args", "env", "code", "says"), [
    (["version"], {}, 0, __version__),
    (["--version"], {}, 0, __version__),
    (["nosuch"], {}, 2, "No such command"),
    (["jobs", "list", "--bogus"], {}, 2, "--bogus"),
    (["config", "show"], {"HISTORICAL_DAYS": "lots"}, 2, "HISTORICAL_DAYS"),
    (["jobs", "enqueue", "fetch", "--payload", "[1]"], {}, 2, "JSON object"),
    (["jobs", "enqueue", "nosuch-kind"], {}, 2, "known kinds"),
    (["keys", "create", "--scope", "superuser"], {}, 2, "scopes"),
    (["forcing", "export", "x.nc", "--start", "yesterday", "--end", "2024-01-02T00:00Z"], {}, 2, "ISO 8601"),
    (["jobs", "cancel", "999"], {}, 1, "999"),
    (["jobs", "show", "999"], {}, 1, "999"),
    (["areas", "show", "999"], {}, 1, "999"),
    (["fetch", "http://127.0.0.1:9/x"], {}, 1, "EARTHKEEP_ALLOW_PRIVATE_URLS"),
    (["fetch", "http://127.0.0.1:{port}/x"], {"EARTHKEEP_ALLOW_PRIVATE_URLS": "true"}, 1, "error"),
])
def test_exit_codes(home, upgraded, args, env, code, says):
    shutil.copy(upgraded, home / "catalog.db")
    args = [a.replace("{port}", str(free_port())) for a in args]
    r = ek(*args, cwd=home, env=env)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert says in (r.stdout if code == 0 else r.stderr)


def test_nightlights_submit_wait_exits_1_when_the_request_fails(home):
    down = f"http://127.0.0.1:{free_port()}"
    env = {"NIGHTLIGHTS_LAADS_URL": down, "EARTHDATA_TOKEN": "t", "EARTHKEEP_ALLOW_PRIVATE_URLS": "true",
           "EARTHKEEP_BACKOFF_SECONDS": "0.05", "EARTHKEEP_POLL_SECONDS": "0.2", "EARTHKEEP_RETRIES": "0"}
    assert ek("db", "upgrade", cwd=home).returncode == 0
    (home / "a.geojson").write_text(json.dumps(SQUARE))
    assert ek("areas", "add", "a.geojson", cwd=home).returncode == 0
    worker = subprocess.Popen([*CLI, "serve", "--role", "worker"], cwd=home, env={**os.environ, **env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = time.monotonic()
        r = ek("nightlights", "submit", "1", "2024-01", "2024-01", "--wait", cwd=home, env=env, timeout=240)
        assert r.returncode == 1, (r.stdout, r.stderr, time.monotonic() - started)
        assert "failed" in r.stderr and "2024-01" in r.stderr
    finally:
        worker.terminate()
        worker.wait(timeout=30)


@pytest.mark.parametrize("args", [
    ["jobs", "list"], ["keys", "list"], ["tasks", "list"], ["stations", "list"], ["areas", "list"],
    ["rescue", "status"], ["rescue", "rank"], ["forcing", "gaps"], ["weather", "dead-letters"],
    ["items", "list"], ["runs", "list"], ["jobs", "show", "1"], ["items", "show", "downloads", "x"],
])
def test_every_list_and_show_command_speaks_json(home, upgraded, args):
    shutil.copy(upgraded, home / "catalog.db")
    assert ek("jobs", "enqueue", "fetch", "--payload", '{"url": "https://example.org/a.nc"}', cwd=home).returncode == 0
    r = ek(*args, "--json", cwd=home)
    if args[:2] == ["items", "show"]:
        assert r.returncode == 1 and "x" in r.stderr and r.stdout == ""  # not found: an error, not JSON
        return
    assert r.returncode == 0, r.stderr
    value = json.loads(r.stdout)
    if args == ["jobs", "list"]:
        assert [j["kind"] for j in value["jobs"]] == ["fetch"] and value["counts"]["pending"] == 1
    if args == ["jobs", "show", "1"]:
        assert value["payload"] == {"url": "https://example.org/a.nc"} and value["status"] == "pending"


def test_tables_on_a_pipe_are_not_cut_to_80_columns(home, upgraded):
    shutil.copy(upgraded, home / "catalog.db")
    name = "a-station-operator-with-a-very-long-name-" * 3
    assert ek("keys", "create", "--scope", "read", "--name", name, cwd=home).returncode == 0
    listed = ek("keys", "list", cwd=home).stdout
    assert name in listed and "…" not in listed


def test_housekeeping_jobs_are_hidden_unless_asked(home, upgraded):
    shutil.copy(upgraded, home / "catalog.db")
    for kind in ("rescue.reap", "rescue.reap", "fetch"):
        assert ek("jobs", "enqueue", kind, "--payload", '{"url": "https://example.org/a"}' if kind == "fetch" else "{}",
                  cwd=home).returncode == 0
    plain = json.loads(ek("jobs", "list", "--json", cwd=home).stdout)
    assert [j["kind"] for j in plain["jobs"]] == ["fetch"] and "rescue.reap" in plain["hidden_kinds"]
    table = ek("jobs", "list", cwd=home)
    assert "rescue.reap" not in table.stdout and "--all" in table.stderr
    every = json.loads(ek("jobs", "list", "--all", "--json", cwd=home).stdout)
    assert sorted(j["kind"] for j in every["jobs"]) == ["fetch", "rescue.reap", "rescue.reap"]
