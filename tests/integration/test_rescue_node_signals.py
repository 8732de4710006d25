"""A rescue node stopped mid-run (SIGINT, SIGTERM, cancelled) gives its leases back at once; the CLI exits 130/143.

The node runs as a subprocess of the real CLI against the API served in-process; the data host
serves the files of dataset 0 at once and makes every other download hang after its first bytes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import bagit
import pytest
from rescue_support import auth, client, count, key, rescue_app, seed_catalog, services_for
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from earthkeep.config import TransferSettings
from earthkeep.rescue.node import HttpNodeClient, RescueNode
from earthkeep.rescue.settings import RescueSettings
from earthkeep.runtime import Services
from earthkeep.store.obstore import ObstoreStore
from earthkeep.testbed.faults import Fault, FaultInjector
from earthkeep.testbed.runner import serve_app

SIZE = 50_000


def data_host(started: list[str]) -> Starlette:
    """``/files/<i>/<j>.csv``: dataset 0 whole at once; the others 1000 bytes, then nothing for minutes."""

    async def serve(request: Request) -> Response:
        headers = {"content-length": str(SIZE)}
        if request.method == "HEAD":
            return Response(headers=headers, media_type="text/csv")
        if request.path_params["i"] == "0":
            return Response(b"x" * SIZE, media_type="text/csv")
        started.append(request.url.path)

        async def trickle() -> AsyncIterator[bytes]:
            yield b"y" * 1000
            await asyncio.sleep(300)
            yield b"y" * (SIZE - 1000)

        return StreamingResponse(trickle(), headers=headers, media_type="text/csv")

    return Starlette(routes=[Route("/files/{i}/{j}.csv", serve, methods=["GET", "HEAD"])])


@pytest.fixture
def world(tmp_path, monkeypatch) -> Iterator[tuple[Services, str, list[str]]]:
    monkeypatch.chdir(tmp_path)
    svc = services_for(f"sqlite:///{tmp_path}/catalog.db", tmp_path)
    svc.use_settings(RescueSettings(replication=1))  # the default 15-minute lease
    started: list[str] = []
    with serve_app(data_host(started)) as files:
        seed_catalog(svc, n_datasets=5, per_dataset=2, size=SIZE, base=files, allow_private=True)
        with serve_app(rescue_app(svc)) as server:
            yield svc, server, started
    svc.close()


def wait_for(what: str, check, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert proc.poll() is None, f"the node exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stopped_node_gives_its_leases_back(world, tmp_path, sig, code):
    svc, server, started = world
    directory = tmp_path / "node"
    cmd = [sys.executable, "-m", "earthkeep.cli.main", "rescue", "node", "--server", server, "--token",
           key(svc, "node", name="n1"), "--dir", str(directory), "--allow-private", "--batch", "4",
           "--concurrency", "4", "--name", "n1"]
    log = (tmp_path / "node.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ | {"COLUMNS": "200"})
    try:
        done = "SELECT count(*) FROM rescue_allocations WHERE status = 'done'"
        wait_for("dataset 0 rescued", lambda: count(svc.engine, done) == 2, proc)
        wait_for("two downloads hanging", lambda: len(set(started)) == 2, proc)
        time.sleep(0.3)  # their first bytes are on the node's disk
        proc.send_signal(sig)
        returncode = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "node.log").read_text()
    engine = svc.engine
    assert count(engine, "SELECT count(*) FROM rescue_allocations WHERE status = 'active'") == 0
    assert returncode == code, output
    assert f"stopped by {sig.name}: 2 leases given back" in output
    assert count(engine, "SELECT count(*) FROM rescue_allocations WHERE status = 'failed' "
                         "AND reason LIKE '%stopped before this download finished%'") == 2
    # the half-downloaded assets are not rescued: no copy, back in the pool, not marked at risk
    assert count(engine, "SELECT count(*) FROM rescue_copies") == 2
    assert count(engine, "SELECT count(*) FROM rescue_assets WHERE replicas > 0") == 2
    assert count(engine, "SELECT count(*) FROM rescue_assets WHERE state = 'failing'") == 0
    assert sorted(p.name for p in (directory / "bags").iterdir()) == ["ds-0"]
    bagit.Bag(str(directory / "bags" / "ds-0")).validate()
    # another node gets them at once, not after the 15-minute lease
    with client(svc) as api:
        other = auth(key(svc, "node", name="n2"))
        assert api.post("/nodes/register", json={"name": "n2", "capacity_bytes": 10**9}, headers=other).is_success
        leases = api.post("/allocate", json={"max_items": 10}, headers=other).json()["allocations"]
    assert {lease["url"].split("/files/")[1] for lease in leases} >= {p.split("/files/")[1] for p in started}


def test_a_payload_already_in_its_bag_is_given_back_as_done(world, tmp_path):
    """Cancelled while its 'done' report is on the way (the server holds it 3 s): given back as done."""
    svc, _server, _started = world
    directory = tmp_path / "node"
    slow_release = Fault("delay", path="/release", methods=("POST",), times=1, delay_s=3.0)

    async def scenario(server: str) -> RescueNode:
        client = HttpNodeClient(server, key(svc, "node", name="n1"))
        transfer = TransferSettings(work_dir=directory / ".partial", allow_private=True, retries=1)
        node = RescueNode(client, ObstoreStore.local(directory), transfer, name="n1", capacity_bytes=10**9,
                          directory=directory, batch=1)
        task = asyncio.create_task(node.run(max_rounds=1))
        tags = directory / "bags" / "ds-0" / "tagmanifest-sha256.txt"  # the bag's last file of an add
        for _ in range(600):
            if tags.exists() or task.done():
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the report is now held by the server
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.aclose()
        return node

    with serve_app(FaultInjector(rescue_app(svc), [slow_release])) as server:
        node = asyncio.run(scenario(server))
        time.sleep(3.5)  # the held report arrives too, and changes nothing
    assert node.stats.released == 1 and node.stats.done == 1 and node.stats.bytes == SIZE
    assert count(svc.engine, "SELECT count(*) FROM rescue_allocations WHERE status = 'done'") == 1
    assert count(svc.engine, "SELECT count(*) FROM rescue_allocations WHERE status != 'done'") == 0
    assert count(svc.engine, "SELECT count(*) FROM rescue_copies") == 1
    bagit.Bag(str(directory / "bags" / "ds-0")).validate()
