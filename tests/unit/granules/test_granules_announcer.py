"""The announcer stopped while a message is in flight: the message is marked sent, never published twice."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from earthkeep.events.base import Event
from earthkeep.granules.outbox import add_message, unsent
from earthkeep.granules.publisher import Announcer, attach_sinks
from earthkeep.runtime import Services
from earthkeep.settings import load_settings
from earthkeep.store.obstore import ObstoreStore


def open_services(tmp_path) -> Services:
    s = load_settings(catalog={"database_url": f"sqlite:///{tmp_path}/c.db"},
                      transfer={"work_dir": tmp_path / "partial"})
    return Services.open(s, store=ObstoreStore.local(tmp_path / "store"))


async def test_a_stop_right_after_a_send_still_marks_the_message_sent(tmp_path):
    svc = open_services(tmp_path)
    try:
        with svc.sessions.begin() as s:
            add_message(s, "/AVO/viirs/sdr", "file", {"uid": "a.h5"})
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        release = threading.Event()
        sent: list[Event] = []
        busy: list[asyncio.Future[bool]] = []

        def sink(event: Event) -> None:  # sent; the one worker thread is then busy, so the mark waits
            sent.append(event)
            busy.append(loop.run_in_executor(None, release.wait))

        attach_sinks(svc.bus, sink)
        task = asyncio.create_task(Announcer(svc).drain())
        while not busy:
            await asyncio.sleep(0.01)
        task.cancel()  # the collector stops here, before the mark ran
        release.set()
        await busy[0]
        await asyncio.gather(task, return_exceptions=True)
        with svc.sessions() as s:
            assert unsent(s) == []
        assert len(sent) == 1
    finally:
        svc.close()
