"""Rescue nodes end to end: emulated portal -> discovery -> server over HTTP -> nodes -> verified BagIt bags."""

from __future__ import annotations

import asyncio
from pathlib import Path

import bagit
import pytest
from rescue_support import count, key, portal, rescue_app, services_for
from sqlalchemy import select

from earthkeep.config import TransferSettings
from earthkeep.rescue.domain import discover_now
from earthkeep.rescue.node import HttpNodeClient, RescueNode
from earthkeep.rescue.selfnode import BAG_PREFIX, rescue_here
from earthkeep.rescue.settings import RescueSettings
from earthkeep.rescue.tables import Copy, RescueAsset
from earthkeep.store.obstore import ObstoreStore
from earthkeep.testbed.runner import serve_app


class Progress:
    def __init__(self):
        self.started_n, self.bytes, self.results = 0, 0, []

    def started(self, lease):
        self.started_n += 1

    def advanced(self, lease, n):
        self.bytes += n

    def finished(self, lease, ok, note):
        self.results.append(ok)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    svc = services_for(f"sqlite:///{tmp_path}/catalog.db", tmp_path, allow_private=True, retries=1)
    with portal(40, seed=21) as (base, emu):
        svc.use_settings(RescueSettings(portal=base, replication=2, lease_s=60))
        discover_now(svc)
        with serve_app(rescue_app(svc)) as server:
            yield svc, server, emu
    svc.close()


async def run_node(server, secret, directory: Path, name, *, allow_private=True, progress=None):
    client = HttpNodeClient(server, secret)
    transfer = TransferSettings(work_dir=directory / ".partial", allow_private=allow_private, retries=1)
    node = RescueNode(client, ObstoreStore.local(directory), transfer, name=name, capacity_bytes=10**9,
                      directory=directory, batch=200, concurrency=8, progress=progress)
    try:
        return await node.run(until_empty=True, heartbeat_s=1.0)
    finally:
        await client.aclose()


def test_two_nodes_rescue_everything_into_valid_bags(setup, tmp_path):
    svc, server, _emu = setup
    progress = Progress()
    one = asyncio.run(run_node(server, key(svc, "node", name="one"), tmp_path / "one", "one", progress=progress))
    two = asyncio.run(run_node(server, key(svc, "node", name="two"), tmp_path / "two", "two"))
    assert one.done > 0 and two.done > 0 and one.lost == two.lost == 0
    assert progress.started_n == one.leases and progress.bytes == one.bytes and len(progress.results) == one.leases
    for directory in (tmp_path / "one" / "bags", tmp_path / "two" / "bags"):
        bags = list(directory.iterdir())
        assert bags
        for path in bags:
            bag = bagit.Bag(str(path))
            bag.validate()
            assert (path / "metadata" / "ckan.json").exists() and any((path / "metadata" / "headers").iterdir())
    with svc.sessions() as s:
        both = s.scalars(select(RescueAsset).where(RescueAsset.verified_copies == 2)).all()
        assert len(both) == min(one.done, two.done) or len(both) > 0
        assert not s.scalars(select(Copy).where(Copy.disagreement.is_(True))).all()  # the same bytes everywhere
        failing = s.scalars(select(RescueAsset).where(RescueAsset.state == "failing")).all()
        assert all(a.last_error for a in failing)
    assert one.failed > 0 and two.failed > 0  # 404s at least; flaky hosts may add some
    assert count(svc.engine, "SELECT count(*) FROM rescue_allocations WHERE status = 'active'") == 0


def test_a_node_refuses_private_targets_itself(setup, tmp_path):
    svc, server, _emu = setup
    stats = asyncio.run(run_node(server, key(svc, "node", name="strict"), tmp_path / "strict", "strict",
                                 allow_private=False))
    assert stats.done == 0 and stats.failed == stats.leases > 0
    assert not (tmp_path / "strict" / "bags").exists() or not any((tmp_path / "strict" / "bags").rglob("data/*"))
    assert count(svc.engine, "SELECT count(*) FROM rescue_allocations WHERE status = 'failed' "
                             "AND reason LIKE '%InvalidInput%'") == stats.leases


def test_the_server_rescues_into_its_own_store(setup, tmp_path):
    svc, _server, _emu = setup
    out = asyncio.run(rescue_here(svc, rounds=2))
    assert out["done"] > 0
    keys = [o.key for o in asyncio.run(svc.store.list(BAG_PREFIX + "/"))]
    assert any(k.endswith("/bagit.txt") for k in keys) and any("/data/" in k for k in keys)
    bag_dirs = {Path(k).parts[2] for k in keys}
    for name in list(bag_dirs)[:5]:
        bagit.Bag(str(tmp_path / "store" / BAG_PREFIX / name)).validate()


def node_cli(server, secret, directory: Path, *extra: str):
    from typer.testing import CliRunner

    from earthkeep.cli.main import app

    return CliRunner().invoke(app, ["rescue", "node", "--server", server, "--token", secret, "--dir", str(directory),
                                    "--allow-private", "--name", directory.name, *extra])


def test_once_runs_exactly_one_allocation_round(setup, tmp_path):
    svc, server, _emu = setup
    pool = count(svc.engine, "SELECT count(*) FROM rescue_assets WHERE pool")
    assert pool > 10  # more than one batch
    r = node_cli(server, key(svc, "node", name="once"), tmp_path / "once", "--once", "--batch", "5")
    assert r.exit_code == 0, r.output
    assert "rounds 1, leases 5," in r.output
    assert count(svc.engine, "SELECT count(*) FROM rescue_allocations") == 5
    assert count(svc.engine, "SELECT count(*) FROM rescue_allocations WHERE status = 'active'") == 0
    done = count(svc.engine, "SELECT count(*) FROM rescue_allocations WHERE status = 'done'")
    assert count(svc.engine, "SELECT count(*) FROM rescue_copies") == done
    assert count(svc.engine, "SELECT count(*) FROM rescue_assets WHERE replicas > 0") == done


def test_a_round_whose_assets_all_fail_still_exits_0(setup, tmp_path):
    svc, server, _emu = setup
    from typer.testing import CliRunner

    from earthkeep.cli.main import app

    directory = tmp_path / "strict"  # without --allow-private: every loopback URL is refused by the node
    r = CliRunner().invoke(app, ["rescue", "node", "--server", server, "--token", key(svc, "node", name="strict"),
                                 "--dir", str(directory), "--once", "--batch", "5"])
    assert r.exit_code == 0, r.output
    assert "leases 5, done 0, failed 5" in r.output
    assert count(svc.engine, "SELECT count(*) FROM rescue_allocations WHERE status = 'failed'") == 5
