"""The job kinds: the handler registry, the lease owner of a job, and how a handler is called."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
import structlog

from earthkeep.catalog.tables import Job
from earthkeep.errors import InvalidInput
from earthkeep.jobs.handlers import HandlerRegistry, JobContext, Kind, call_handler, lease_owner


async def collect(ctx: JobContext) -> dict:
    """collect the forcing files"""
    return {"got": ctx.payload.get("n", 0)}


async def other(ctx: JobContext) -> None:
    return None


def context(payload: dict | None = None) -> JobContext:
    return JobContext(job=Job(id=1, kind="k", payload=payload), services=None, log=structlog.get_logger("t"))


def registry() -> HandlerRegistry:
    r = HandlerRegistry()
    r.register("forcing.collect", collect, max_attempts=3, timeout_s=60)
    r.register("granules.mirror", other, description="mirror VIIRS SDR granules")
    r.register("nightlights.sweep", other, housekeeping=True)
    return r


def test_a_kind_keeps_what_it_was_registered_with():
    r = registry()
    assert r.get("forcing.collect") == Kind("forcing.collect", collect, 3, 60, "collect the forcing files")
    assert r.get("granules.mirror").description == "mirror VIIRS SDR granules"
    assert r.get("nightlights.sweep").description == ""  # no docstring, no description
    assert (r.get("granules.mirror").max_attempts, r.get("granules.mirror").timeout_s) == (None, None)


def test_an_unknown_kind_lists_the_known_ones_sorted():
    with pytest.raises(InvalidInput, match=re.escape(
            "unknown job kind 'forcing.colect'; known kinds: forcing.collect, granules.mirror, nightlights.sweep")):
        registry().get("forcing.colect")
    with pytest.raises(InvalidInput, match=r"known kinds: none$"):
        HandlerRegistry().get("fetch")


def test_names_housekeeping_and_membership():
    r = registry()
    assert r.names() == ["forcing.collect", "granules.mirror", "nightlights.sweep"]
    assert r.housekeeping() == ["nightlights.sweep"]
    assert "granules.mirror" in r and "fetch" not in r


def test_registering_the_same_handler_twice_is_harmless_but_another_one_is_refused():
    r = registry()
    r.register("forcing.collect", collect, max_attempts=9)  # a domain registered again: the first stays
    assert r.get("forcing.collect").max_attempts == 3
    with pytest.raises(ValueError, match=r"job kind 'forcing\.collect' registered twice with different handlers"):
        r.register("forcing.collect", other)


def test_check_runs_the_kinds_validator_and_refuses_unknown_kinds():
    seen: list[dict] = []

    def validate(payload: dict) -> None:
        seen.append(payload)
        if "url" not in payload:
            raise InvalidInput("fetch job: url: Field required")

    r = HandlerRegistry()
    r.register("fetch", other, validate=validate)
    r.register("plain", other)
    r.check("fetch", {"url": "http://127.0.0.1/x"})
    r.check("plain", {"anything": 1})
    with pytest.raises(InvalidInput, match="url: Field required"):
        r.check("fetch", {})
    with pytest.raises(InvalidInput, match="unknown job kind 'nope'"):
        r.check("nope", {})
    assert seen == [{"url": "http://127.0.0.1/x"}, {}]


def test_a_lease_is_owned_by_the_job_so_its_next_attempt_takes_it_over():
    assert lease_owner(42) == lease_owner(42) == "job-42"
    assert lease_owner(0) == "job-0"  # job id 0 is a job, not "no job"
    a, b = lease_owner(None), lease_owner(None)
    assert a != b and re.fullmatch(r"[0-9a-f]{32}", a) and re.fullmatch(r"[0-9a-f]{32}", b)


async def test_async_handlers_run_in_the_loop_and_plain_ones_in_a_thread():
    threads: list[int] = []

    def plain(ctx: JobContext) -> dict:
        threads.append(threading.get_ident())
        return {"payload": ctx.payload}

    assert await call_handler(Kind("a", collect), context({"n": 5})) == {"got": 5}
    assert await call_handler(Kind("p", plain), context(None)) == {"payload": {}}  # no payload reads as {}
    assert threads and threads[0] != threading.get_ident()


async def test_a_handler_over_its_timeout_is_stopped():
    cancelled = asyncio.Event()

    async def slow(ctx: JobContext) -> None:
        try:
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        await call_handler(Kind("slow", slow, timeout_s=0.05), context())
    assert cancelled.is_set()
