"""``earthkeep rescue``: discover against the emulator, rank, status, and a node run."""

import socket

import pytest
from typer.testing import CliRunner

from earthkeep.cli.common import set_config_file
from earthkeep.cli.rescue import app, parse_bytes
from earthkeep.errors import InvalidInput
from earthkeep.testbed.ckan import CkanEmulator, create_ckan_app
from earthkeep.testbed.ckan_catalog import PortalSpec, SyntheticPortal
from earthkeep.testbed.runner import serve_app

runner = CliRunner()


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "S3_ENDPOINT", "EARTHKEEP_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EARTHKEEP_LOG_FORMAT", "console")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("EARTHKEEP_ALLOW_PRIVATE_URLS", "true")
    emu = CkanEmulator(SyntheticPortal(PortalSpec(datasets=60, organizations=5, seed=8)))
    with serve_app(create_ckan_app(emu, faults=False)) as base:
        monkeypatch.setenv("EARTHKEEP_RESCUE_PORTAL", base)
        set_config_file(None)
        yield base
    set_config_file(None)


def run(*args):
    set_config_file(None)
    return runner.invoke(app, list(args))


def test_discover_rank_status(embedded):
    r = run("discover", "--full")
    assert r.exit_code == 0, r.output
    assert "created" in r.output and "60" in r.output and "probed" in r.output
    r = run("rank", "--top", "5")
    assert r.exit_code == 0, r.output
    assert "rescue ranking" in r.output and "copies" in r.output
    r = run("status")
    assert r.exit_code == 0, r.output
    assert "datasets" in r.output and "nodes" in r.output


def test_node_against_a_server_that_refuses_is_one_clear_line(embedded, tmp_path):
    r = run("node", "--server", embedded, "--token", "ek_nope", "--dir", str(tmp_path / "n"), "--once")
    assert r.exit_code == 1
    assert "error" in r.output and "HTTP 4" in r.output


def test_node_against_an_unreachable_server_exits_1(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run("node", "--server", f"http://127.0.0.1:{port}", "--token", "ek_x", "--dir", str(tmp_path / "n"), "--once")
    assert r.exit_code == 1
    assert "error" in r.output and "rescue server" in r.output


@pytest.mark.parametrize("args", [("--capacity", "lots"), ("--batch", "0"), ("--concurrency", "0")])
def test_node_usage_errors_exit_2(tmp_path, args):
    r = run("node", "--server", "http://127.0.0.1:9", "--token", "ek_x", "--dir", str(tmp_path / "n"), "--once",
            *args)
    assert r.exit_code == 2, r.output


@pytest.mark.parametrize(("text", "value"), [("500G", 500 << 30), ("2T", 2 << 40), ("1048576", 1 << 20),
                                             ("1.5GiB", int(1.5 * (1 << 30)))])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


def test_parse_bytes_refuses_garbage():
    with pytest.raises(InvalidInput):
        parse_bytes("lots")
