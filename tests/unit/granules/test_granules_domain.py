"""The granules domain's hooks: the job kinds it registers and the schedules it declares."""

from __future__ import annotations

from earthkeep.granules.domain import register, schedules
from earthkeep.jobs.handlers import HandlerRegistry
from earthkeep.settings import load_settings


def test_register_and_schedules():
    class Svc:
        registry = HandlerRegistry()

    register(Svc)  # type: ignore[arg-type]
    assert {"granules.mirror", "granules.elements", "granules.retention"} <= set(Svc.registry.names())
    assert [s.kind for s in schedules(load_settings())] == ["granules.mirror", "granules.elements",
                                                             "granules.retention"]
