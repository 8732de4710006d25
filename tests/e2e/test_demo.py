"""`earthkeep demo --exit`: the emulators, a real `earthkeep serve` and every domain filled, in one command."""

from __future__ import annotations

import subprocess
import sys

from earthkeep.testbed.servers import free_port


def test_demo_fills_all_five_domains_offline(tmp_path):
    root = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "earthkeep.cli.main", "demo", "--dir", str(root), "--port",
                        str(free_port()), "--stations-seconds", "4", "--exit", "--timeout", "600"],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout, r.stderr, (root / "serve.log").read_text()[-3000:])
    counts = {}
    for line in r.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 3 and cells[2].replace(",", "").isdigit():
            counts[(cells[0], cells[1])] = int(cells[2].replace(",", ""))
    assert counts[("forcing", "GFS wind files")] >= 41  # the latest cycle's 120 h forecast at least
    assert counts[("stations", "observations")] > 0 and counts[("stations", "stations")] == 8
    assert counts[("granules", "granules")] > 0 and counts[("granules", "messages")] >= counts[("granules", "granules")]
    assert counts[("rescue", "datasets")] == 60 and counts[("rescue", "assets rescued")] > 0
    assert counts[("nightlights", "area-months")] == 2
    env = (root / "demo.env").read_text()
    assert "FORCING_GFS_AWS_URL=" in env and "EARTHKEEP_GINA_URL=" in env and "NIGHTLIGHTS_LAADS_URL=" in env
    assert "ek_" not in env  # keys live apart, in keys.env (mode 600)
    assert (root / "keys.env").stat().st_mode & 0o077 == 0


def test_demo_refuses_a_directory_it_did_not_make(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    r = subprocess.run([sys.executable, "-m", "earthkeep.cli.main", "demo", "--dir", str(precious), "--exit"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not an earlier demo" in r.stderr
    assert (precious / "thesis.tex").read_text() == "years of work"
