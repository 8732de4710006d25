"""Every guide's "Try it offline" recipe, run exactly as written (the ```sh recipe blocks of docs/*.md).

Each block runs in bash with ``-e -o pipefail`` in an empty directory, with the virtualenv's
``bin`` first on ``PATH`` (as after ``. .venv/bin/activate``); background jobs a failed
recipe leaves are killed. A recipe passes when every command in it exits 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```sh recipe\n(.*?)^```$", re.S | re.M)
# a user's shell has none of the test environment's settings
CLEAN = ("DATABASE_URL", "EARTHKEEP_STORE_DIR", "EARTHKEEP_CONFIG", "LOG_LEVEL", "EARTHKEEP_LOG_FORMAT", "S3_ENDPOINT")


def recipes() -> list[tuple[str, str]]:
    out = []
    for doc in sorted(DOCS.glob("*.md")):
        out += [(doc.stem, m.group(1)) for m in FENCE.finditer(doc.read_text())]
    return out


def test_every_domain_guide_has_a_recipe():
    assert {name for name, _ in recipes()} >= {"forcing", "granules", "ingest", "nightlights", "rescue"}


@pytest.mark.parametrize(("guide", "script"), recipes(), ids=[name for name, _ in recipes()])
def test_recipe_runs_as_written(guide, script, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    wrapped = "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + script
    r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", wrapped], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, f"{guide} recipe failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
