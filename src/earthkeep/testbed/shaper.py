"""A network shaper: a loopback TCP proxy that makes any emulator look far away and finite.

Loopback makes every download CPU-bound; users fetch from a bucket in another
region. :class:`Shaper` sits in front of any server and gives **every accepted
connection its own link**:

* a bandwidth limit (``mbit_per_conn``, a token bucket per direction: a chunk of
  ``n`` bytes leaves ``n / rate`` after the previous one, as on a serialising
  link; ``0`` means unlimited);
* a round-trip delay (``rtt_ms``): every byte reaches the other side ``rtt/2``
  after it left, in both directions, and a new connection waits one round trip
  (the TCP handshake) before its first byte is forwarded. A plain HTTP request on
  a new connection therefore costs two round trips before the first answer byte,
  one on a kept-alive connection, as over a real network.

Not modelled: TCP slow start and congestion windows, packet loss, a shared
bottleneck between connections (each connection has its own link, as when a
bucket's per-connection throughput is the limit).

::

    with shaped(base_url, Shaping(rtt_ms=40, mbit_per_conn=200)) as url:
        ...                                     # same paths, through the shaper
    with shaper_process(base_url, Shaping()) as url:
        ...                                     # the proxy in its own process (benchmarks)

``earthkeep testbed serve NAME --rtt-ms 40 --mbit 200`` puts one in front of an
emulator. :attr:`Shaper.stats` counts connections and bytes, for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

CHUNK = 256 * 1024
READ_AHEAD_S = 0.02  # how far the reader may run ahead of the link's clock
QUEUE_CHUNKS = 64
START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Shaping:
    """One link per connection: round-trip time and bandwidth (each direction)."""

    rtt_ms: float = 40.0
    mbit_per_conn: float = 200.0

    def __post_init__(self) -> None:
        if self.rtt_ms < 0 or self.mbit_per_conn < 0:
            raise ValueError("rtt_ms and mbit_per_conn must be >= 0 (0: no delay / unlimited)")

    @property
    def one_way_s(self) -> float:
        return self.rtt_ms / 2000.0

    @property
    def bytes_per_s(self) -> float | None:
        """Bytes a second per direction of a connection; ``None`` when unlimited."""
        return self.mbit_per_conn * 1e6 / 8 if self.mbit_per_conn else None

    def describe(self) -> str:
        rate = f"{self.mbit_per_conn:g} Mbit/s" if self.mbit_per_conn else "unlimited"
        return f"{self.rtt_ms:g} ms RTT, {rate} per connection"


@dataclass
class ShaperStats:
    """What went through: connections accepted and open, bytes each way."""

    accepted: int = 0
    open: int = 0
    upstream_bytes: int = 0  # client -> server
    downstream_bytes: int = 0  # server -> client
    peak_open: int = 0


class Pacer:
    """A token bucket as a virtual clock: when the last byte given so far has left the link."""

    def __init__(self, bytes_per_s: float | None) -> None:
        self.rate = bytes_per_s
        self.clock = 0.0

    def departure(self, now: float, nbytes: int) -> float:
        """The time the last of ``nbytes`` sent at ``now`` leaves (``now`` when unlimited)."""
        if self.rate is None:
            return now
        self.clock = max(self.clock, now) + nbytes / self.rate
        return self.clock


@dataclass
class _Link:
    """One direction of one connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    shaping: Shaping
    count: str
    queue: asyncio.Queue[tuple[float, bytes]] = field(default_factory=lambda: asyncio.Queue(QUEUE_CHUNKS))


class Shaper:
    """The proxy: listens on ``host:port`` (free by default), forwards to ``upstream`` (``host:port``)."""

    def __init__(
        self, upstream: tuple[str, int], shaping: Shaping | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.upstream = upstream
        self.shaping = shaping or Shaping()
        self.host, self.port = host, port
        self.stats = ShaperStats()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=4 * CHUNK)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop accepting and drop every open connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        # the work runs in its own task: cancelling the stream callback's task itself makes
        # asyncio (3.11) log a traceback
        task = asyncio.create_task(self._connection(client_r, client_w))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        self.stats.open += 1
        self.stats.peak_open = max(self.stats.peak_open, self.stats.open)
        writers = [client_w]
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream, limit=4 * CHUNK)
            writers.append(server_w)
            await asyncio.sleep(2 * self.shaping.one_way_s)  # the handshake: SYN out, SYN-ACK back
            up = _Link(client_r, server_w, self.shaping, "upstream_bytes")
            down = _Link(server_r, client_w, self.shaping, "downstream_bytes")
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(up))
                group.create_task(self._pump(down))
        except* (OSError, asyncio.IncompleteReadError):
            for w in writers:  # one side reset or failed: the other side sees a reset too
                w.transport.abort()
        finally:
            self.stats.open -= 1
            for w in writers:
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()

    async def _pump(self, link: _Link) -> None:
        """Read from one side, pace, and deliver each chunk one way later; EOF travels too."""
        deliver = asyncio.create_task(self._deliver(link))
        try:
            await self._read(link)
        except BaseException:
            deliver.cancel()
            raise
        await deliver

    async def _read(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        pacer = Pacer(link.shaping.bytes_per_s)
        while True:
            data = await link.reader.read(CHUNK)
            now = loop.time()
            leaves = pacer.departure(now, len(data)) if data else max(now, pacer.clock)
            await link.queue.put((leaves + link.shaping.one_way_s, data))
            if not data:
                return
            setattr(self.stats, link.count, getattr(self.stats, link.count) + len(data))
            ahead = leaves - now - READ_AHEAD_S
            if ahead > 0:
                await asyncio.sleep(ahead)

    async def _deliver(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await link.queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if link.writer.can_write_eof():
                    link.writer.write_eof()
                return
            link.writer.write(data)
            await link.writer.drain()


def _split(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"need an http://host:port URL to shape, got {url!r}")
    return parts.hostname, parts.port


def _replace_port(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"{host}:{port}", parts.path, parts.query, parts.fragment)).rstrip("/")


@contextmanager
def shaped(
    upstream_url: str, shaping: Shaping | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """A :class:`Shaper` in front of ``upstream_url``, served from a daemon thread; yields the proxied URL.

    The path of ``upstream_url`` is kept: ``http://127.0.0.1:P/x`` becomes
    ``http://127.0.0.1:Q/x``.
    """
    with running_shaper(upstream_url, shaping, host=host, port=port) as shaper:
        yield _replace_port(upstream_url, host, shaper.port)


@contextmanager
def running_shaper(
    upstream_url: str, shaping: Shaping | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[Shaper]:
    """Like :func:`shaped`, but yields the :class:`Shaper` (its ``port`` and ``stats``)."""
    shaper = Shaper(_split(upstream_url), shaping, host=host, port=port)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(shaper.start())
        except BaseException as exc:  # reported to the caller below
            failed.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(shaper.close())
        loop.close()

    thread = threading.Thread(target=run, name=f"shaper:{upstream_url}", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_S) or failed:
        raise RuntimeError(f"the shaper did not start: {failed[0] if failed else 'timeout'}")
    try:
        yield shaper
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=START_TIMEOUT_S)


SERVE_CODE = (
    "import sys; from earthkeep.testbed.shaper import serve_forever; "
    "serve_forever(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))"
)


def serve_forever(upstream_url: str, rtt_ms: float, mbit_per_conn: float, port: int, host: str = "127.0.0.1") -> None:
    """Run a shaper in the foreground until interrupted (what :func:`shaper_process` starts)."""

    async def main() -> None:
        shaper = Shaper(_split(upstream_url), Shaping(rtt_ms, mbit_per_conn), host=host, port=port)
        await shaper.start()
        try:
            await asyncio.Event().wait()
        finally:
            await shaper.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@contextmanager
def shaper_process(upstream_url: str, shaping: Shaping | None = None) -> Iterator[str]:
    """A shaper in a child process (so it shares neither CPU time nor GIL with a benchmark); yields its URL."""
    from earthkeep.testbed.runner import child_server

    shaping = shaping or Shaping()
    args = (upstream_url, str(shaping.rtt_ms), str(shaping.mbit_per_conn))
    with child_server(SERVE_CODE, *args) as base:
        host, port = _split(base)
        yield _replace_port(upstream_url, host, port)


if __name__ == "__main__":  # python -m earthkeep.testbed.shaper UPSTREAM_URL RTT_MS MBIT PORT
    serve_forever(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
