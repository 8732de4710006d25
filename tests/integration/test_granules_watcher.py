"""Files dropped into a watched directory are catalogued and announced like mirrored ones."""

from __future__ import annotations

import asyncio
import shutil

from granules_support import config, emulator, open_services, readme_subscriber
from sqlalchemy import select

from earthkeep.catalog.tables import Item
from earthkeep.granules.service import Collector
from earthkeep.sources.gina import COLLECTION


async def wait_until(pred, timeout_s: float = 10.0) -> bool:
    for _ in range(int(timeout_s / 0.05)):
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


async def test_dropped_files_are_catalogued_and_published(tmp_path):
    emu = emulator(tmp_path)
    made = emu.add_granules(2)
    watch = tmp_path / "incoming"
    watch.mkdir()
    shutil.copy(emu.path(made[0]), watch / made[0].name)  # there before the start
    svc = open_services(f"sqlite:///{tmp_path}/c.db", tmp_path)
    try:
        cfg = config(svc, watch_dir=watch)
        with readme_subscriber(cfg.viirs.publish_address) as sub:
            async with Collector(svc, cfg, join_grace_s=0.3) as collector:
                await asyncio.sleep(0.3)
                tmp = tmp_path / "staging"
                tmp.mkdir()
                for g in made[1:3]:  # written in place
                    shutil.copy(emu.path(g), watch / g.name)
                for g in made[3:]:  # written elsewhere, moved in
                    shutil.copy(emu.path(g), tmp / g.name)
                    (tmp / g.name).rename(watch / g.name)
                (watch / "notes.txt").write_text("not a granule")
                (watch / "SVM16_npp_d20240101_t0000000_e0001000_b00001_c20240101001000000000_cspp_dev.h5"
                 ).write_bytes(b"not hdf5")
                names = sorted(g.name for g in made)
                assert await wait_until(lambda: sorted(collector.watcher.stored) == names)
                msgs = await asyncio.to_thread(sub.recv_all, len(made))
        with svc.sessions() as s:
            items = sorted(s.scalars(select(Item.item_id).where(Item.collection == COLLECTION)))
        assert items == names
        assert sorted(m.data["uid"] for m in msgs) == names
        assert all(m.data["uri"].endswith(m.data["uid"]) for m in msgs)
    finally:
        svc.close()
