"""VIIRS_RETENTION: store objects and catalog rows of old granules go together."""

from __future__ import annotations

import os
from datetime import timedelta

from granules_support import config, emulator, open_services
from sqlalchemy import func, select

from earthkeep.catalog.tables import Asset, Item, utcnow
from earthkeep.granules.mirror import mirror
from earthkeep.granules.retention import apply_retention
from earthkeep.granules.tables import GranuleMessage
from earthkeep.testbed.runner import serve_app


async def test_retention_deletes_old_files_rows_and_watched_files(db_url, tmp_path):
    emu = emulator(tmp_path)
    emu.add_granules(1)
    svc = open_services(db_url, tmp_path)
    watch = tmp_path / "incoming"
    watch.mkdir()
    old, fresh = watch / "old.h5", watch / "fresh.h5"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(old, (0, 0))
    later = (utcnow() + timedelta(days=2)).timestamp()  # younger than the cutoff below
    os.utime(fresh, (later, later))
    try:
        with serve_app(emu.app()) as base:
            await mirror(svc, config(svc, base))
        with svc.sessions.begin() as s:
            s.execute(GranuleMessage.__table__.update().values(sent_at=utcnow()))
        assert (await apply_retention(svc, 7))["items"] == 0  # everything is recent
        out = await apply_retention(svc, 7, watch_dir=watch, now=utcnow() + timedelta(days=8))
        assert out["items"] == out["objects"] == out["messages"] == 3
        assert await svc.store.list("viirs/") == []
        with svc.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Item)) == 0
            assert s.scalar(select(func.count()).select_from(Asset)) == 0
        assert not old.exists() and fresh.exists()
        assert (await apply_retention(svc, None))["skipped"]
    finally:
        svc.close()
