"""`earthkeep serve` as users run it: a real process, real HTTP, real downloads from the testbed."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from earthkeep.testbed.faults import Fault, FaultInjector
from earthkeep.testbed.fileserver import create_file_app
from earthkeep.testbed.runner import serve_app
from earthkeep.testbed.servers import free_port

EARTHKEEP = [sys.executable, "-m", "earthkeep.cli.main"]


def _env(tmp: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "DATABASE_URL", "EARTHKEEP_"))}
    env.update({
        "DATABASE_URL": f"sqlite:///{tmp}/earthkeep.db", "EARTHKEEP_STORE_DIR": str(tmp / "store"),
        "EARTHKEEP_PARTIAL_DIR": str(tmp / "partial"), "EARTHKEEP_API_PORT": str(port),
        "EARTHKEEP_ALLOW_PRIVATE_URLS": "true", "EARTHKEEP_MAX_ATTEMPTS": "2", "EARTHKEEP_BACKOFF_SECONDS": "0.2",
        "EARTHKEEP_POLL_SECONDS": "0.1", "EARTHKEEP_RETRIES": "1", "LOG_LEVEL": "INFO",
    })
    env.update(extra)
    return env


class Service:
    def __init__(self, tmp: Path, **extra: str) -> None:
        self.port = free_port()
        self.env = _env(tmp, self.port, **extra)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "serve.log", "wb")  # noqa: SIM115
        self.key = self.cli("keys", "create", "--scope", "admin", "--name", "e2e").strip().splitlines()[-1]
        self.proc = subprocess.Popen([*EARTHKEEP, "serve"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.base, timeout=10, headers={"Authorization": f"Bearer {self.key}"})
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, (tmp / "serve.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/health").status_code == 200:
                    break
            assert time.monotonic() < deadline, "earthkeep serve did not answer /health"
            time.sleep(0.1)

    def cli(self, *args: str) -> str:
        return subprocess.run([*EARTHKEEP, *args], env=self.env, check=True, capture_output=True, text=True).stdout

    def wait_job(self, job_id: int, statuses: tuple[str, ...], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.http.get(f"/jobs/{job_id}").json()
            if job["status"] in statuses:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} never reached {statuses}: {job}")

    def fetch(self, url: str, **payload: object) -> int:
        r = self.http.post("/jobs", json={"kind": "fetch", "payload": {"url": url, **payload}})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        finally:
            self.http.close()
            self.log.close()


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "remote"
    d.mkdir()
    data = os.urandom(3 * 1024 * 1024 + 17)
    (d / "good.bin").write_bytes(data)
    (d / "bad.bin").write_bytes(data)
    injector = FaultInjector(create_file_app(d), [Fault(kind="reset", path="/bad.bin", times=None, after_bytes=1000,
                                                        methods=("GET", "HEAD"))])
    with serve_app(injector) as base:
        yield base, data


def test_serve_downloads_records_and_survives_bad_servers(tmp_path, files):
    base, data = files
    svc = Service(tmp_path)
    try:
        good = svc.fetch(f"{base}/good.bin", sha256=hashlib.sha256(data).hexdigest(), item_id="good")
        job = svc.wait_job(good, ("completed", "failed"))
        assert job["status"] == "completed", job
        assert svc.http.get("/items/downloads/good/assets/data").content == data
        assert (tmp_path / "store" / "downloads" / "good" / "good.bin").read_bytes() == data

        resets = svc.fetch(f"{base}/bad.bin", item_id="resets")
        lying = svc.fetch(f"{base}/good.bin", sha256="0" * 64, item_id="lying")
        for job_id in (resets, lying):
            job = svc.wait_job(job_id, ("failed",))
            assert job["attempts"] == 2 and job["error"], job
        assert "IntegrityError" in svc.http.get(f"/jobs/{lying}").json()["error"]
        assert not (tmp_path / "store" / "downloads" / "resets").exists()
        assert not (tmp_path / "store" / "downloads" / "lying").exists()
        assert svc.http.get("/items/downloads/lying").status_code == 404
        assert svc.http.get("/ready").status_code == 200  # the service kept running
        assert 'earthkeep_jobs{status="failed"} 2.0' in svc.http.get("/metrics").text
    finally:
        code = svc.stop()
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
    log = (tmp_path / "serve.log").read_text()
    assert '"event": "service.stopped"' in log and '"trace_id"' in log


def test_serve_starts_while_s3_is_down_and_jobs_retry(tmp_path, files):
    base, _ = files
    closed = free_port()
    svc = Service(tmp_path, S3_ENDPOINT=f"http://127.0.0.1:{closed}", S3_ACCESS_KEY="k", S3_SECRET_KEY="s",
                  EARTHKEEP_STORE_TIMEOUT="2", EARTHKEEP_MAX_ATTEMPTS="3")
    try:
        ready = svc.http.get("/ready")
        assert ready.status_code == 503 and f"127.0.0.1:{closed}" in ready.json()["checks"]["store"]
        job_id = svc.fetch(f"{base}/good.bin", item_id="later")
        job = svc.wait_job(job_id, ("failed",))
        assert "StoreUnavailable" in job["error"] and job["attempts"] == 3
        assert svc.http.get("/health").status_code == 200
    finally:
        assert svc.stop() == 0
