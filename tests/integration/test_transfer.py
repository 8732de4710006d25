"""The transfer engine against the real testbed file server on loopback, with injected faults.

One server (uvicorn in a thread) serves generated files for the whole module; each
test sets its own fault rules and reads the server's request records. Retry waits
are recorded, not slept, so the suite is fast and has no timing assertions.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from earthkeep.config import TransferSettings
from earthkeep.errors import Conflict, IntegrityError, InvalidInput, NotFound, TransferFailed
from earthkeep.store.memory import MemoryStore
from earthkeep.store.obstore import ObstoreStore
from earthkeep.testbed import Fault, FaultInjector, create_file_app, serve_app
from earthkeep.transfer import RetryPolicy, TransferEngine, TransferRequest
from earthkeep.transfer.partial import PartialFile
from earthkeep.transfer.request import identity, partial_name

MIB = 1 << 20
SIZES = {
    "tiny.bin": 3000,
    "medium.bin": 6 * MIB + 123,
    "big.bin": 24 * MIB + 7,
    "huge.bin": 64 * MIB + 5,
    "empty.bin": 0,
}


@dataclass
class Served:
    base: str
    faults: FaultInjector
    files: dict[str, bytes]

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def gets(self) -> list:
        return [r for r in self.faults.records if r.method == "GET"]

    async def settle(self) -> None:
        """Wait (at most 10 s) until requests of an abandoned download have drained, then reset the counters."""
        seen = -1
        for _ in range(200):
            now = len(self.faults.records)
            if self.faults.active == 0 and now == seen:
                break
            seen = now
            await asyncio.sleep(0.05)
        self.faults.clear()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("files")
    rng = random.Random(20261122)
    files = {name: rng.randbytes(size) for name, size in SIZES.items()}
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "sub").mkdir()
    for i in range(4):
        files[f"sub/part{i}.bin"] = rng.randbytes(3 * MIB + i)
        (root / f"sub/part{i}.bin").write_bytes(files[f"sub/part{i}.bin"])
    injector = FaultInjector(create_file_app(root), seed=7)
    with serve_app(injector) as base:
        yield Served(base, injector, files)


@pytest.fixture(autouse=True)
def _no_faults(served: Served) -> None:
    served.faults.clear()


class Sleeps:
    """A retry ``sleep`` that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def local_store(tmp_path: Path) -> ObstoreStore:
    return ObstoreStore.local(tmp_path / "store")


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path / "work"


EngineFactory = Callable[..., TransferEngine]


@pytest.fixture
def make_engine(local_store: ObstoreStore, work_dir: Path, sleeps: Sleeps) -> EngineFactory:
    def make(store: ObstoreStore | None = None, **overrides: object) -> TransferEngine:
        values = {
            "work_dir": work_dir,
            "segments": 4,
            "per_host": 8,
            "retries": 3,
            "timeout_s": 5.0,
            "allow_private": True,
        } | overrides
        settings = TransferSettings(**values)
        return TransferEngine(store or local_store, settings, retry=RetryPolicy(sleep=sleeps))

    return make


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def stored_keys(store: ObstoreStore) -> list[str]:
    return [info.key for info in await store.list()]


def leftovers(work_dir: Path) -> list[str]:
    return sorted(p.name for p in work_dir.iterdir()) if work_dir.exists() else []


# ----------------------------------------------------------------- the server


async def test_file_server_speaks_ranges(served):
    data = served.files["tiny.bin"]
    async with httpx.AsyncClient(base_url=served.base) as client:
        head = await client.head("/tiny.bin")
        assert head.headers["accept-ranges"] == "bytes" and head.headers["content-length"] == str(len(data))
        assert head.headers["etag"] and head.headers["last-modified"]
        cases = {
            "bytes=10-19": data[10:20],
            "bytes=-100": data[-100:],
            "bytes=2990-": data[2990:],
            "bytes=2995-99999": data[2995:],
        }
        for value, expected in cases.items():
            answer = await client.get("/tiny.bin", headers={"range": value})
            assert (answer.status_code, answer.content) == (206, expected), value
        assert (await client.get("/tiny.bin", headers={"range": "bytes=0-9"})).headers["content-range"] == (
            f"bytes 0-9/{len(data)}"
        )
        unsatisfiable = await client.get("/tiny.bin", headers={"range": "bytes=5000-"})
        assert unsatisfiable.status_code == 416 and unsatisfiable.headers["content-range"] == f"bytes */{len(data)}"
        assert (await client.get("/tiny.bin")).content == data
        assert (await client.get("/missing.bin")).status_code == 404
        assert (await client.get("/../etc/passwd")).status_code == 404


# ------------------------------------------------------------------ downloads


async def test_multi_segment_download_is_byte_identical(served, make_engine, local_store, work_dir):
    data = served.files["big.bin"]
    seen: list[int] = []
    async with make_engine() as engine:
        result = await engine.fetch(
            TransferRequest(
                served.url("big.bin"),
                "grib/big.bin",
                size=len(data),
                sha256=sha256(data),
                md5=hashlib.md5(data).hexdigest(),
                content_type="application/octet-stream",
            ),
            progress=seen.append,
        )
    assert await local_store.get("grib/big.bin") == data
    assert (result.size, result.sha256, result.md5) == (len(data), sha256(data), hashlib.md5(data).hexdigest())
    assert result.stored is not None and result.stored.sha256 == sha256(data)
    assert sum(seen) == len(data) and result.fetched == len(data) and result.resumed == 0
    ranges = {r.range for r in served.gets()}
    assert len(ranges) >= 4 and None not in ranges  # several segments, every GET a range request
    assert result.attempts == len(served.faults.records)
    assert leftovers(work_dir) == []


async def test_download_into_every_store(served, make_engine, store):
    data = served.files["medium.bin"]
    async with make_engine(store=store) as engine:
        result = await engine.fetch(TransferRequest(served.url("medium.bin"), "m/medium.bin", sha256=sha256(data)))
    assert await store.get("m/medium.bin") == data
    assert (await store.head("m/medium.bin")).sha256 == result.sha256 == sha256(data)


async def test_memory_store_computes_the_checksum_itself(served, make_engine):
    data = served.files["medium.bin"]
    memory = MemoryStore()
    async with make_engine(store=memory) as engine:
        plain = await engine.fetch(TransferRequest(served.url("medium.bin"), "mem/a.bin"))
        checked = await engine.fetch(
            TransferRequest(served.url("medium.bin"), "mem/b.bin", md5=hashlib.md5(data).hexdigest())
        )
    assert await memory.get("mem/a.bin") == data == await memory.get("mem/b.bin")
    assert plain.sha256 == checked.sha256 == sha256(data) and plain.md5 is None
    assert checked.md5 == hashlib.md5(data).hexdigest()


async def test_small_and_empty_files(served, make_engine, local_store):
    async with make_engine() as engine:
        tiny = await engine.fetch(TransferRequest(served.url("tiny.bin"), "t/tiny.bin"))
        empty = await engine.fetch(TransferRequest(served.url("empty.bin"), "t/empty.bin", size=0))
    assert await local_store.get("t/tiny.bin") == served.files["tiny.bin"]
    assert await local_store.get("t/empty.bin") == b""
    assert tiny.sha256 == sha256(served.files["tiny.bin"]) and empty.sha256 == sha256(b"")


async def test_single_stream_when_the_server_has_no_ranges(served, make_engine, local_store):
    data = served.files["medium.bin"]
    served.faults.set_faults([Fault("ignore_range", methods=("GET", "HEAD"), times=None)])
    async with make_engine() as engine:
        info = await engine.head(served.url("medium.bin"))
        result = await engine.fetch(TransferRequest(served.url("medium.bin"), "s/m.bin", sha256=sha256(data)))
    assert not info.ranges and info.size == len(data)
    assert await local_store.get("s/m.bin") == data
    plain = [r for r in served.gets() if r.range is None]  # besides the one-byte probe, answered in full
    assert len(plain) == 1 and plain[0].status == 200 and plain[0].body_bytes == len(data)
    assert result.fetched == len(data)


async def test_single_stream_without_ranges_restarts_after_a_cut(served, make_engine, local_store, sleeps):
    data = served.files["medium.bin"]
    served.faults.set_faults(
        [
            Fault("truncate", after_bytes=2 * MIB, ranged=False, times=1),  # the first matching rule applies
            Fault("ignore_range", methods=("GET", "HEAD"), times=None),
        ]
    )
    async with make_engine() as engine:
        result = await engine.fetch(TransferRequest(served.url("medium.bin"), "s/m.bin", sha256=sha256(data)))
    assert await local_store.get("s/m.bin") == data
    assert result.retries == 1 and len(sleeps.delays) == 1


async def test_one_segment_setting_uses_one_request(served, make_engine, local_store):
    data = served.files["big.bin"]
    async with make_engine(segments=1) as engine:
        await engine.fetch(TransferRequest(served.url("big.bin"), "one/big.bin"))
    assert await local_store.get("one/big.bin") == data
    assert [r.range for r in served.gets()] == [f"bytes=0-{len(data) - 1}"]


async def test_redirects_are_followed(served, make_engine, local_store):
    data = served.files["sub/part1.bin"]
    served.faults.set_faults(
        [
            Fault(
                "redirect",
                path="/alias.bin",
                location="/sub/part1.bin",
                status=307,
                times=None,
                methods=("GET", "HEAD"),
            )
        ]
    )
    async with make_engine() as engine:
        result = await engine.fetch(TransferRequest(served.url("alias.bin"), "a/alias.bin", sha256=sha256(data)))
    assert await local_store.get("a/alias.bin") == data and result.url == served.url("alias.bin")
    assert {r.path for r in served.faults.records} == {"/alias.bin", "/sub/part1.bin"}


async def test_redirect_loops_fail(served, make_engine, local_store):
    served.faults.set_faults(
        [Fault("redirect", path="/loop.bin", location="/loop.bin", times=None, methods=("GET", "HEAD"))]
    )
    async with make_engine() as engine:
        with pytest.raises(TransferFailed, match="redirects"):
            await engine.fetch(TransferRequest(served.url("loop.bin"), "a/loop.bin"))
    assert await stored_keys(local_store) == []


# ------------------------------------------------------------------------ ranges


async def test_ranges_request_stores_exactly_their_concatenation(served, make_engine, local_store):
    data = served.files["big.bin"]
    n = len(data)
    ranges = [(5 * MIB, 5 * MIB + 99), (0, 9), (10, 19), (100, 2 * MIB), (n - 1000, None), (3, 12)]
    expected = b"".join(data[s : (n if e is None else e + 1)] for s, e in ranges)
    async with make_engine() as engine:
        result = await engine.fetch(
            TransferRequest(
                served.url("big.bin"), "r/cut.grib2", ranges=ranges, size=len(expected), sha256=sha256(expected)
            )
        )
    assert await local_store.get("r/cut.grib2") == expected
    assert result.size == len(expected)
    assert all(r.status == 206 for r in served.gets())


async def test_neighbouring_ranges_merge_into_fewer_requests(served, make_engine, local_store):
    data = served.files["medium.bin"]
    ranges = [(0, 999), (1000, 1999), (2010, 2999), (4 * MIB, 4 * MIB + 10)]
    expected = b"".join(data[s : e + 1] for s, e in ranges)
    async with make_engine() as engine:
        await engine.fetch(TransferRequest(served.url("medium.bin"), "r/merged", ranges=ranges, merge_gap=16))
    assert await local_store.get("r/merged") == expected
    assert sorted(r.range for r in served.gets() if r.range != "bytes=0-0") == [
        "bytes=0-2999",
        f"bytes={4 * MIB}-{4 * MIB + 10}",
    ]


async def test_ranges_past_the_end_are_refused(served, make_engine, local_store):
    async with make_engine() as engine:
        with pytest.raises(InvalidInput, match="past the end"):
            await engine.fetch(TransferRequest(served.url("tiny.bin"), "r/x", ranges=[(5000, 5010)]))
    assert await stored_keys(local_store) == []


# ------------------------------------------------------------------------ resume


async def test_resume_after_cancellation_fetches_only_the_rest(served, make_engine, local_store, work_dir):
    data = served.files["big.bin"]
    req = TransferRequest(served.url("big.bin"), "r/big.bin", sha256=sha256(data))
    half = asyncio.Event()
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if done >= len(data) // 2:
            half.set()

    async with make_engine() as engine:
        task = asyncio.create_task(engine.fetch(req, progress))
        await half.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await stored_keys(local_store) == []
        assert len(leftovers(work_dir)) == 2  # the partial file and its sidecar
        await served.settle()
        result = await engine.fetch(req)
    assert await local_store.get("r/big.bin") == data
    assert result.resumed >= len(data) // 2
    assert result.fetched == len(data) - result.resumed
    assert served.faults.bytes_sent() == result.fetched
    assert leftovers(work_dir) == []


KILL_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from earthkeep.config import TransferSettings
    from earthkeep.store.obstore import ObstoreStore
    from earthkeep.transfer import TransferEngine, TransferRequest

    url, work, store_dir, kill_at = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    done = 0

    def progress(n):
        global done
        done += n
        if done >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    async def main():
        settings = TransferSettings(work_dir=work, segments=4, allow_private=True)
        async with TransferEngine(ObstoreStore.local(store_dir), settings) as engine:
            await engine.fetch(TransferRequest(url, "k/huge.bin"), progress)

    asyncio.run(main())
    """
)


async def test_resume_after_the_process_is_killed(served, make_engine, local_store, work_dir, tmp_path):
    data = served.files["huge.bin"]
    args = [
        sys.executable,
        "-c",
        KILL_SCRIPT,
        served.url("huge.bin"),
        str(work_dir),
        str(tmp_path / "store"),
        str(len(data) * 3 // 4),
    ]
    proc = await asyncio.to_thread(subprocess.run, args, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert await stored_keys(local_store) == []
    await served.settle()
    async with make_engine() as engine:
        result = await engine.fetch(TransferRequest(served.url("huge.bin"), "k/huge.bin", sha256=sha256(data)))
    assert await local_store.get("k/huge.bin") == data
    assert result.resumed >= 32 * MIB  # the sidecar is saved at least every 32 MiB
    assert served.faults.bytes_sent() == result.fetched == len(data) - result.resumed


async def test_changed_remote_is_not_resumed(served, make_engine, local_store, work_dir):
    data = served.files["medium.bin"]
    req = TransferRequest(served.url("medium.bin"), "c/m.bin")
    async with make_engine() as engine:
        remote = await engine.head(req.url)
    stale = dict(identity(req, remote), etag='"something-else"')
    partial = await PartialFile.open(work_dir, partial_name(req), stale)
    await partial.write(0, [b"\0" * MIB])
    await partial.close()
    async with make_engine() as engine:
        result = await engine.fetch(req)
    assert result.resumed == 0 and await local_store.get("c/m.bin") == data


async def test_a_second_writer_of_the_same_request_is_refused(served, make_engine, local_store, work_dir):
    req = TransferRequest(served.url("tiny.bin"), "c/tiny.bin")
    async with make_engine() as engine:
        remote = await engine.head(req.url)
        holder = await PartialFile.open(work_dir, partial_name(req), identity(req, remote))
        try:
            with pytest.raises(Conflict, match="another transfer"):
                await engine.fetch(req)
        finally:
            await holder.remove()
        await engine.fetch(req)
    assert await local_store.get("c/tiny.bin") == served.files["tiny.bin"]


# ------------------------------------------------------------------------ faults

RECOVERABLE = {
    "500": Fault("status", status=500, times=2),
    "503": Fault("status", status=503, times=1, methods=("GET", "HEAD")),
    "reset-mid-body": Fault("reset", after_bytes=300_000, times=2),
    "reset-before-headers": Fault("reset", after_bytes=-1, times=2),
    "truncate": Fault("truncate", after_bytes=MIB + 5, times=2),
    "ignore-range": Fault("ignore_range", ranged=True, times=2),
    "shorter-content-length": Fault("wrong_length", length_delta=-4096, ranged=True, times=1),
    "stall-mid-body": Fault("delay", after_bytes=100_000, delay_s=3.0, times=1),
    "slow-start": Fault("delay", delay_s=3.0, times=1),
}


@pytest.mark.parametrize("name", list(RECOVERABLE))
async def test_fault_is_retried_then_succeeds(name, served, make_engine, local_store, sleeps, work_dir):
    data = served.files["medium.bin"]
    served.faults.set_faults([RECOVERABLE[name]])
    stalls = RECOVERABLE[name].kind == "delay"  # a short read timeout only where the server stalls on purpose
    async with make_engine(timeout_s=1.0 if stalls else 10.0) as engine:
        result = await engine.fetch(TransferRequest(served.url("medium.bin"), "f/m.bin", sha256=sha256(data)))
    assert await local_store.get("f/m.bin") == data
    faulted = [r for r in served.faults.records if r.fault]
    assert faulted and result.retries >= len(faulted) >= 1
    assert len(sleeps.delays) == result.retries
    assert leftovers(work_dir) == []


async def test_longer_content_length_on_a_range_answer_needs_no_retry(served, make_engine, local_store):
    data = served.files["medium.bin"]
    served.faults.set_faults([Fault("wrong_length", length_delta=4096, ranged=True, times=1)])
    async with make_engine() as engine:
        result = await engine.fetch(TransferRequest(served.url("medium.bin"), "f/m.bin", sha256=sha256(data)))
    assert await local_store.get("f/m.bin") == data
    assert result.retries == 0  # every asked-for byte arrived; the connection is dropped, not reused


async def test_429_retry_after_is_honoured(served, make_engine, local_store, sleeps):
    data = served.files["tiny.bin"]
    served.faults.set_faults(
        [
            Fault("status", status=429, retry_after="7", times=1, methods=("HEAD",)),
            Fault("status", status=429, retry_after="3", times=1),
        ]
    )
    async with make_engine() as engine:
        result = await engine.fetch(TransferRequest(served.url("tiny.bin"), "f/t.bin"))
    assert sleeps.delays == [7.0, 3.0]
    assert result.retries == 2 and await local_store.get("f/t.bin") == data


async def test_retry_after_is_capped(served, local_store, work_dir, sleeps):
    served.faults.set_faults([Fault("status", status=503, retry_after="86400", times=1)])
    settings = TransferSettings(work_dir=work_dir, allow_private=True)
    retry = RetryPolicy(sleep=sleeps, retry_after_cap_s=30.0)
    async with TransferEngine(local_store, settings, retry=retry) as engine:
        await engine.fetch(TransferRequest(served.url("tiny.bin"), "f/t.bin"))
    assert sleeps.delays == [30.0]


async def test_backoff_grows_between_failures(served, make_engine, sleeps):
    served.faults.set_faults([Fault("status", status=502, times=3)])
    async with make_engine(segments=1) as engine:
        await engine.fetch(TransferRequest(served.url("tiny.bin"), "f/t.bin"))
    assert len(sleeps.delays) == 3
    assert sleeps.delays[0] <= 0.25 < sleeps.delays[2] <= 1.0


async def test_server_resetting_every_connection_fails_and_stores_nothing(
    served, make_engine, local_store, sleeps, work_dir
):
    served.faults.set_faults([Fault("reset", after_bytes=-1, times=None, methods=("GET", "HEAD"))])
    url = served.url("medium.bin")
    async with make_engine(retries=2) as engine:
        with pytest.raises(TransferFailed) as info:
            await engine.fetch(TransferRequest(url, "f/m.bin"))
    assert url in str(info.value) and "gave up after 3 failed attempts" in str(info.value)
    assert len(served.faults.records) == 3 and len(sleeps.delays) == 2
    assert await stored_keys(local_store) == []
    assert leftovers(work_dir) == []


async def test_persistent_mid_body_resets_fail_and_keep_the_partial_for_later(
    served, make_engine, local_store, work_dir
):
    served.faults.set_faults([Fault("reset", after_bytes=1000, times=None)])
    async with make_engine(retries=1) as engine:
        with pytest.raises(TransferFailed, match=r"ReadError|RemoteProtocolError"):
            await engine.fetch(TransferRequest(served.url("medium.bin"), "f/m.bin"))
    assert await stored_keys(local_store) == []
    assert len(leftovers(work_dir)) == 2


async def test_persistent_500_fails_naming_the_cause(served, make_engine, local_store):
    served.faults.set_faults([Fault("status", status=500, times=None)])
    async with make_engine(retries=2) as engine:
        with pytest.raises(TransferFailed, match="500 Internal Server Error"):
            await engine.fetch(TransferRequest(served.url("tiny.bin"), "f/t.bin"))
    assert await stored_keys(local_store) == []


async def test_persistently_ignored_range_fails(served, make_engine, local_store):
    served.faults.set_faults([Fault("ignore_range", ranged=True, times=None)])
    async with make_engine(retries=1) as engine:
        with pytest.raises(TransferFailed, match="206 was required"):
            await engine.fetch(TransferRequest(served.url("medium.bin"), "f/m.bin"))
    assert await stored_keys(local_store) == []


async def test_missing_file_is_not_found_without_retries(served, make_engine, local_store, sleeps):
    async with make_engine() as engine:
        with pytest.raises(NotFound, match="404"):
            await engine.fetch(TransferRequest(served.url("nope.bin"), "f/nope.bin"))
    served.faults.set_faults([Fault("status", status=404, times=1)])
    async with make_engine() as engine:
        with pytest.raises(NotFound):
            await engine.fetch(TransferRequest(served.url("tiny.bin"), "f/t.bin"))
    assert sleeps.delays == [] and await stored_keys(local_store) == []


async def test_a_404_leaves_no_partial_file_behind(served, make_engine, work_dir):
    async with make_engine() as engine:
        with pytest.raises(NotFound):  # the probe says 404
            await engine.fetch(TransferRequest(served.url("nope.bin"), "f/nope.bin"))
        with pytest.raises(NotFound):  # closed ranges are not probed: the first GET says 404
            await engine.fetch(TransferRequest(served.url("nope.bin"), "f/nope.grib2", ranges=[(0, 99)]))
        served.faults.set_faults([Fault("status", status=404, times=1)])
        with pytest.raises(NotFound):  # the probe found it, the GET no longer does
            await engine.fetch(TransferRequest(served.url("tiny.bin"), "f/t.bin"))
    assert leftovers(work_dir) == []


async def test_forbidden_fails_at_once(served, make_engine, sleeps):
    served.faults.set_faults([Fault("status", status=403, times=None, methods=("GET", "HEAD"))])
    async with make_engine() as engine:
        with pytest.raises(TransferFailed, match="403"):
            await engine.fetch(TransferRequest(served.url("tiny.bin"), "f/t.bin"))
    assert sleeps.delays == []


# --------------------------------------------------------------------- integrity


async def test_corrupted_bytes_are_caught_by_the_checksum(served, make_engine, local_store, work_dir):
    data = served.files["medium.bin"]
    served.faults.set_faults([Fault("corrupt", after_bytes=1234, count=3, times=1)])
    async with make_engine() as engine:
        with pytest.raises(IntegrityError, match="sha256 mismatch"):
            await engine.fetch(TransferRequest(served.url("medium.bin"), "i/m.bin", sha256=sha256(data)))
    assert await stored_keys(local_store) == []
    assert leftovers(work_dir) == []


async def test_wrong_expected_checksum_stores_nothing(served, make_engine, local_store, work_dir):
    async with make_engine() as engine:
        with pytest.raises(IntegrityError, match="md5 mismatch"):
            await engine.fetch(TransferRequest(served.url("tiny.bin"), "i/t.bin", md5="0" * 32))
        with pytest.raises(IntegrityError, match="sha256 mismatch"):
            await engine.fetch(TransferRequest(served.url("tiny.bin"), "i/t.bin", sha256="f" * 64))
    assert await stored_keys(local_store) == []
    assert leftovers(work_dir) == []


async def test_unexpected_size_fails_before_downloading(served, make_engine, local_store):
    async with make_engine() as engine:
        with pytest.raises(IntegrityError, match="expected 10 bytes but the server announces 3000"):
            await engine.fetch(TransferRequest(served.url("tiny.bin"), "i/t.bin", size=10))
    assert served.gets() == [] and await stored_keys(local_store) == []


async def test_head_lying_about_content_length_is_caught(served, make_engine, local_store, work_dir):
    served.faults.set_faults([Fault("wrong_length", length_delta=5000, methods=("HEAD",), times=None)])
    async with make_engine() as engine:
        with pytest.raises(IntegrityError, match="Content-Range"):
            await engine.fetch(TransferRequest(served.url("medium.bin"), "i/m.bin"))
    assert await stored_keys(local_store) == []
    assert leftovers(work_dir) == []


async def test_short_content_length_without_ranges_is_caught_by_size(served, make_engine, local_store):
    data = served.files["medium.bin"]
    served.faults.set_faults(
        [
            Fault("wrong_length", length_delta=-5000, methods=("GET",), ranged=False, times=None),
            Fault("ignore_range", methods=("GET", "HEAD"), times=None),
        ]
    )
    async with make_engine() as engine:
        with pytest.raises(IntegrityError, match="expected"):
            await engine.fetch(TransferRequest(served.url("medium.bin"), "i/m.bin", size=len(data)))
    assert await stored_keys(local_store) == []


# -------------------------------------------------------------- limits and many


async def test_per_host_limit_is_respected(served, make_engine, local_store):
    names = [f"sub/part{i}.bin" for i in range(4)]
    reqs = [TransferRequest(served.url(n), f"h/{n}") for n in names]
    async with make_engine(per_host=2, segments=4) as engine:
        results = await engine.fetch_many(reqs, concurrency=4)
    assert all(not isinstance(r, BaseException) for r in results)
    for name in names:
        assert await local_store.get(f"h/{name}") == served.files[name]
    assert 1 <= served.faults.max_active <= 2
    assert len(served.gets()) > 8


async def test_fetch_many_returns_errors_in_place(served, make_engine, local_store):
    reqs = [
        TransferRequest(served.url("tiny.bin"), "m/a"),
        TransferRequest(served.url("gone.bin"), "m/b"),
        TransferRequest(served.url("tiny.bin"), "m/c", sha256="0" * 64),
    ]
    async with make_engine() as engine:
        results = await engine.fetch_many(reqs, concurrency=2)
    assert results[0].key == "m/a"
    assert isinstance(results[1], NotFound) and isinstance(results[2], IntegrityError)
    assert await stored_keys(local_store) == ["m/a"]


async def test_untrusted_private_url_is_refused_before_any_request(served, make_engine, local_store):
    async with make_engine(allow_private=False) as engine:
        with pytest.raises(InvalidInput, match="loopback"):
            await engine.fetch(TransferRequest(served.url("tiny.bin"), "u/t", untrusted=True))
        await engine.fetch(TransferRequest(served.url("tiny.bin"), "u/trusted"))
    assert len(served.faults.records) == 2  # HEAD + GET of the trusted request only


async def test_bad_requests_are_invalid_input(make_engine):
    async with make_engine() as engine:
        with pytest.raises(InvalidInput, match="http"):
            await engine.fetch(TransferRequest("ftp://example.org/x", "a/b"))
        with pytest.raises(InvalidInput):
            await engine.fetch(TransferRequest("http://127.0.0.1:9/x", "../escape"))
        with pytest.raises(InvalidInput):
            await engine.fetch(TransferRequest("http://127.0.0.1:9/x", "a/b", ranges=[(5, 1)]))


async def test_admin_endpoint_sets_faults(served, make_engine, local_store):
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{served.base}/_faults", json={"faults": [{"kind": "status", "status": 503, "times": 1}], "seed": 1}
        )
        assert answer.status_code == 200 and answer.json()["faults"][0]["status"] == 503
        bad = await client.post(f"{served.base}/_faults", json={"faults": [{"kind": "explode"}]})
        assert bad.status_code == 400 and "unknown fault kind" in bad.json()["error"]
    async with make_engine() as engine:
        result = await engine.fetch(TransferRequest(served.url("tiny.bin"), "a/t"))
    assert result.retries == 1
    async with httpx.AsyncClient() as client:
        summary = (await client.get(f"{served.base}/_faults")).json()
        assert summary["faulted"] == 1 and summary["faults"][0]["times"] == 0
        await client.delete(f"{served.base}/_faults")
    assert served.faults.faults == []
