"""The deployment artefacts (compose.yaml, Containerfile) say only what earthkeep understands.

Images are not built here. The checks: every earthkeep container runs a real command with valid roles,
every setting it passes is one earthkeep reads, no secret is written in the file, the image runs as a
non-root user with the CLI as entrypoint; and `docker compose config` accepts the file where compose exists.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from earthkeep.cli.main import app
from earthkeep.serve import parse_roles
from earthkeep.settings import reference as reference_markdown

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
EARTHKEEP = {name: svc for name, svc in COMPOSE["services"].items() if svc.get("image", "").startswith("earthkeep")}
SETTINGS = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", reference_markdown()))
SECRETS = ("PASSWORD", "SECRET", "TOKEN", "DATABASE_URL", "ACCESS_KEY")


def test_every_role_of_a_cluster_has_a_container():
    commands = {tuple(svc["command"]) for svc in EARTHKEEP.values()}
    roles = {r for c in commands if c[:1] == ("serve",) for r in parse_roles(c[c.index("--role") + 1])}
    assert roles == {"api", "worker", "scheduler", "granules"}
    assert ("weather", "consume") in commands and ("db", "upgrade") in commands
    assert {"postgres", "seaweedfs", "nats", "redis"} <= set(COMPOSE["services"])


@pytest.mark.parametrize("name", sorted(EARTHKEEP))
def test_each_container_runs_a_real_command(name):
    command = EARTHKEEP[name]["command"]
    words = [w for w in command if not w.startswith("-")][:2] if command[0] != "--help" else []
    result = CliRunner().invoke(app, [*words, "--help"])
    assert result.exit_code == 0, (name, command, result.output)


@pytest.mark.parametrize("name", sorted(EARTHKEEP))
def test_settings_are_known_and_secrets_come_from_the_environment(name):
    env = EARTHKEEP[name]["environment"]
    unknown = sorted(set(env) - SETTINGS)
    assert not unknown, f"{name} sets what earthkeep does not read: {unknown}"
    for key, value in env.items():
        if any(s in key for s in SECRETS):
            assert "${" in str(value), f"{name}: {key} must come from the environment, not the file"


def test_the_image_runs_the_cli_as_an_unprivileged_user():
    text = (ROOT / "Containerfile").read_text()
    stages = re.findall(r"^FROM .+ AS (\w+)$", text, re.M)
    assert len(stages) >= 2, "multi-stage: build and runtime"
    runtime = text.split(f"AS {stages[-1]}", 1)[1]
    assert re.search(r"^USER (?!root|0\b)\S+", runtime, re.M)
    assert re.search(r'^ENTRYPOINT \[.*"earthkeep"\]$', runtime, re.M)
    assert "COPY --from=build" in runtime and "build-essential" not in runtime
    assert not re.search(r"(PASSWORD|SECRET|TOKEN)\s*=", text), "no credential baked into the image"


def test_docker_compose_accepts_the_file(tmp_path):
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("docker compose is not installed on this machine")
    env = {"POSTGRES_PASSWORD": "x", "S3_ACCESS_KEY": "x", "S3_SECRET_KEY": "x", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([docker, "compose", "-f", str(ROOT / "compose.yaml"), "config", "--quiet"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
