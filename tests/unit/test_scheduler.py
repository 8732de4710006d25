import asyncio

import pytest

from earthkeep.errors import InvalidInput
from earthkeep.scheduler import Schedule, Scheduler, parse_cron


def test_parse_cron_accepts_the_seed_defaults():
    assert parse_cron("0 */6 * * *")
    assert parse_cron("0 2 * * *")


@pytest.mark.parametrize("bad", ["", "* * *", "61 * * * *", "0 25 * * *", "x y z a b"])
def test_parse_cron_rejects(bad):
    with pytest.raises(InvalidInput):
        parse_cron(bad)


async def test_scheduler_enqueues_on_tick_and_survives_enqueue_errors():
    fired: list[str] = []

    def enqueue(s: Schedule) -> None:
        fired.append(s.name)
        if len(fired) == 1:
            raise RuntimeError("database down")

    sched = Scheduler(enqueue)
    sched.add(Schedule("every-minute", "* * * * *", "noop"))
    sched.start()
    try:
        assert sched.next_runs()["every-minute"] is not None
        sched._fire("every-minute")  # what APScheduler calls at each tick
        sched._fire("every-minute")
        await asyncio.sleep(0)
    finally:
        sched.shutdown()
    assert fired == ["every-minute", "every-minute"]
