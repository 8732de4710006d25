"""`serve --role granules` alone fetches the orbital elements at start, so directions are known at once."""

from __future__ import annotations

import asyncio

from granules_support import emulator

from earthkeep.granules.orbits import TLE_KEY
from earthkeep.runtime import Services
from earthkeep.serve import _run_granules
from earthkeep.settings import load_settings
from earthkeep.store.obstore import ObstoreStore
from earthkeep.testbed.runner import serve_app
from earthkeep.testbed.servers import free_port


def _services(tmp_path, tle_url: str) -> Services:
    s = load_settings(catalog={"database_url": f"sqlite:///{tmp_path}/c.db"},
                      transfer={"work_dir": tmp_path / "partial", "retries": 1, "allow_private": True},
                      viirs={"tle_url": tle_url, "publish_address": f"tcp://127.0.0.1:{free_port()}",
                             "segments": ["GMTCO"], "platforms": ["snpp"]})
    return Services.open(s, store=ObstoreStore.local(tmp_path / "store"))


async def _store_has(svc: Services, key: str, timeout: float = 20.0) -> bool:
    for _ in range(int(timeout / 0.1)):
        if await svc.store.exists(key):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_the_granules_role_fetches_elements_when_the_store_has_none(tmp_path):
    emu = emulator(tmp_path)
    with serve_app(emu.app()) as base:
        svc = _services(tmp_path, f"{base}/elements/weather.txt")
        stop = asyncio.Event()
        role = asyncio.create_task(_run_granules(svc, stop))
        try:
            assert await _store_has(svc, TLE_KEY)
            assert (await svc.store.get(TLE_KEY)).decode().startswith("SUOMI NPP")
        finally:
            stop.set()
            await asyncio.wait_for(role, 30)
            svc.close()


async def test_an_unreachable_elements_url_does_not_stop_the_role(tmp_path):
    svc = _services(tmp_path, f"http://127.0.0.1:{free_port()}/weather.txt")
    stop = asyncio.Event()
    role = asyncio.create_task(_run_granules(svc, stop))
    try:
        await asyncio.sleep(3)
        assert not role.done() and not await svc.store.exists(TLE_KEY)
    finally:
        stop.set()
        await asyncio.wait_for(role, 30)
        svc.close()
