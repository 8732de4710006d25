"""The network shaper: bytes pass unchanged, every connection is its own stream, delay and rate are felt.

Timing is only ever checked as a lower bound with a wide margin (a loaded
machine makes things slower, never faster).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from earthkeep.testbed.faults import Fault, FaultInjector
from earthkeep.testbed.fileserver import create_file_app
from earthkeep.testbed.runner import serve_app
from earthkeep.testbed.shaper import Pacer, Shaping, running_shaper, shaped

MB = 1_000_000
FAST = Shaping(rtt_ms=2, mbit_per_conn=0)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shaped-files")


@pytest.fixture(scope="module")
def files(root: Path) -> dict[str, str]:
    digests = {}
    for i, size in enumerate((0, 1, 70_000, 2 * MB, 3 * MB + 17)):
        data = os.urandom(size)
        (root / f"f{i}.bin").write_bytes(data)
        digests[f"f{i}.bin"] = hashlib.sha256(data).hexdigest()
    return digests


@pytest.fixture(scope="module")
def origin(root: Path, files: dict[str, str]) -> Iterator[str]:
    with serve_app(create_file_app(root)) as base:
        yield base


def test_shaping_validates_and_describes() -> None:
    assert Shaping().rtt_ms == 40 and Shaping().mbit_per_conn == 200
    assert Shaping(rtt_ms=40).one_way_s == pytest.approx(0.02)
    assert Shaping(mbit_per_conn=8).bytes_per_s == pytest.approx(1e6)
    assert Shaping(mbit_per_conn=0).bytes_per_s is None
    assert "unlimited" in Shaping(mbit_per_conn=0).describe()
    with pytest.raises(ValueError, match=">= 0"):
        Shaping(rtt_ms=-1)


def test_pacer_is_a_serialising_link() -> None:
    pacer = Pacer(1000.0)
    assert pacer.departure(10.0, 500) == pytest.approx(10.5)
    assert pacer.departure(10.1, 500) == pytest.approx(11.0)  # queued behind the first
    assert pacer.departure(20.0, 1000) == pytest.approx(21.0)  # an idle link does not bank bandwidth
    assert Pacer(None).departure(3.0, 10**9) == 3.0


def test_url_keeps_the_path_and_changes_the_port(origin: str) -> None:
    with shaped(origin + "/some/prefix", FAST) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/some/prefix")
        assert url != origin + "/some/prefix"


def test_bytes_pass_through_unchanged(origin: str, files: dict[str, str]) -> None:
    with shaped(origin, Shaping(rtt_ms=2, mbit_per_conn=400)) as url, httpx.Client(timeout=30) as client:
        for name, digest in files.items():
            answer = client.get(f"{url}/{name}")
            assert answer.status_code == 200
            assert hashlib.sha256(answer.content).hexdigest() == digest
        ranged = client.get(f"{url}/f3.bin", headers={"Range": "bytes=100-199"})
        assert ranged.status_code == 206 and len(ranged.content) == 100


def test_uploads_pass_through_too(files: dict[str, str]) -> None:
    async def echo(scope, receive, send):  # type: ignore[no-untyped-def]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": hashlib.sha256(body).hexdigest().encode()})

    payload = os.urandom(MB + 3)
    with serve_app(echo) as base, shaped(base, FAST) as url:
        answer = httpx.post(url, content=payload, timeout=30)
    assert answer.text == hashlib.sha256(payload).hexdigest()


def test_concurrent_connections_each_get_their_own_stream(origin: str, files: dict[str, str]) -> None:
    names = [n for n in files if n != "f0.bin"] * 4

    async def fetch_all(url: str) -> list[str]:
        limits = httpx.Limits(max_connections=len(names), max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:

            async def one(name: str) -> str:
                answer = await client.get(f"{url}/{name}")
                return hashlib.sha256(answer.content).hexdigest()

            return await asyncio.gather(*(one(n) for n in names))

    with running_shaper(origin, Shaping(rtt_ms=20, mbit_per_conn=0)) as shaper:
        url = f"http://127.0.0.1:{shaper.port}"
        digests = asyncio.run(fetch_all(url))
        assert digests == [files[n] for n in names]
        assert shaper.stats.accepted == len(names)
        assert shaper.stats.peak_open > 1  # they overlapped, each on its own connection
        deadline = time.monotonic() + 10
        while shaper.stats.open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert shaper.stats.open == 0  # closing on both sides ends the proxied connection


def test_bytes_are_counted_both_ways(origin: str, files: dict[str, str]) -> None:
    with running_shaper(origin, FAST) as shaper:
        httpx.get(f"http://127.0.0.1:{shaper.port}/f3.bin", timeout=30)
        assert shaper.stats.downstream_bytes > 2 * MB
        assert 0 < shaper.stats.upstream_bytes < 2000  # one request line and its headers


def test_a_closed_origin_closes_the_client_connection(origin: str) -> None:
    with running_shaper(origin, FAST) as shaper:
        with socket.create_connection(("127.0.0.1", shaper.port), timeout=10) as sock:
            sock.sendall(b"GET /f2.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        assert received.startswith(b"HTTP/1.1 200") and len(received) > 70_000


def test_an_unreachable_origin_is_a_closed_connection() -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        dead = spare.getsockname()[1]
    with shaped(f"http://127.0.0.1:{dead}", FAST) as url, pytest.raises(httpx.TransportError):
        httpx.get(url + "/x", timeout=10)


def test_a_reset_upstream_is_an_error_downstream(files: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(os.urandom(2 * MB))
    app = FaultInjector(create_file_app(tmp_path), [Fault("reset", after_bytes=100_000)])
    with serve_app(app) as base, shaped(base, FAST) as url, pytest.raises(httpx.TransportError):
        httpx.get(url + "/big.bin", timeout=10)


def test_round_trip_delay_is_felt(origin: str) -> None:
    with shaped(origin, Shaping(rtt_ms=200, mbit_per_conn=0)) as url:
        started = time.perf_counter()
        httpx.get(f"{url}/f1.bin", timeout=30)
        # a new connection: handshake + request + answer = two round trips (0.4 s); lower bound only
        assert time.perf_counter() - started >= 0.3


def test_bandwidth_is_limited_per_connection(origin: str) -> None:
    with shaped(origin, Shaping(rtt_ms=0, mbit_per_conn=8)) as url:
        started = time.perf_counter()
        answer = httpx.get(f"{url}/f3.bin", timeout=60)
        assert len(answer.content) == 2 * MB
        assert time.perf_counter() - started >= 1.5  # 2 MB at 1 MB/s: 2 s; lower bound only
