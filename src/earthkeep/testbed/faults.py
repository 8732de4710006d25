"""A fault-injecting ASGI middleware: wrap any testbed app to make it misbehave on purpose.

Rules (:class:`Fault`) match requests by path pattern, method and whether a
``Range`` header is present; each fires a given number of ``times`` (or always)
with a given ``probability`` drawn from a seeded generator, so runs repeat. A
request gets at most one fault: the first armed rule that matches, in order.

=============  ==============================================================
kind           effect
=============  ==============================================================
status         answer ``status`` at once (500, 503, 404, 429 + ``retry_after``)
delay          wait ``delay_s`` before answering, or mid-body at ``after_bytes``
reset          TCP reset (RST) after ``after_bytes`` body bytes (``-1``: before
               the status line)
truncate       close the connection cleanly (FIN) after ``after_bytes`` body bytes
wrong_length   announce ``Content-Length`` + ``length_delta``; a negative delta
               also cuts the body to the announced length
corrupt        flip ``count`` bytes of the body starting at ``after_bytes``
ignore_range   drop the request's ``Range`` header and the answer's
               ``Accept-Ranges``: a ``200`` with the whole file
redirect       answer ``status`` (a 3xx, else 302) with ``Location: location``
=============  ==============================================================

Tests drive it in-process (:meth:`FaultInjector.set_faults`, :attr:`records`,
:attr:`max_active`) or over HTTP: ``POST /_faults`` with ``{"faults": [...],
"seed": 0}``, ``GET /_faults`` for rules and counters, ``DELETE /_faults``.

Resets and clean closes need the connection's transport: servers started with
:func:`earthkeep.testbed.runner.serve_app` register theirs in
:data:`earthkeep.testbed.connections.CONNECTIONS`; under another server the middleware falls back to ending
the response early, which the server turns into a closed connection.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import random
import socket
import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from earthkeep.testbed.connections import CONNECTIONS

FaultKind = Literal["status", "delay", "reset", "truncate", "wrong_length", "corrupt", "ignore_range", "redirect"]
KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]


@dataclass
class Fault:
    """One misbehaviour and the requests it applies to (see the module docstring)."""

    kind: FaultKind
    path: str = "*"
    methods: tuple[str, ...] = ("GET",)
    ranged: bool | None = None
    times: int | None = 1
    probability: float = 1.0
    status: int = 503
    retry_after: str | None = None
    delay_s: float = 0.0
    after_bytes: int = 0
    length_delta: int = 1
    count: int = 1
    location: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        self.methods = tuple(m.upper() for m in self.methods)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build a rule from JSON-like data; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        if "methods" in values:
            values["methods"] = tuple(values["methods"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON-ready data."""
        data = asdict(self)
        data["methods"] = list(self.methods)
        return data

    def matches(self, method: str, path: str, ranged: bool) -> bool:
        """True when the rule is still armed and covers this request."""
        if self.times is not None and self.times <= 0:
            return False
        if self.methods and method.upper() not in self.methods:
            return False
        if self.ranged is not None and self.ranged != ranged:
            return False
        return fnmatch.fnmatchcase(path, self.path)


@dataclass
class RequestRecord:
    """What the middleware saw of one request."""

    method: str
    path: str
    range: str | None
    fault: str | None = None
    status: int | None = None
    body_bytes: int = 0
    done: bool = field(default=False, repr=False)
    generation: int = field(default=0, repr=False)


class _Abort(Exception):
    """Raised into the wrapped app to stop it once a fault has ended the response."""


class FaultInjector:
    """ASGI middleware applying :class:`Fault` rules to the requests of ``app``."""

    def __init__(
        self, app: ASGIApp, faults: Iterable[Fault] = (), *, seed: int = 0, admin_path: str = "/_faults"
    ) -> None:
        self.app = app
        self.admin_path = admin_path
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults)
        self._rng = random.Random(seed)
        self._records: list[RequestRecord] = []
        self._generation = 0
        self.active = 0
        self.max_active = 0

    def set_faults(self, faults: Iterable[Fault], *, seed: int | None = None) -> None:
        """Replace every rule (and reseed the generator when ``seed`` is given)."""
        with self._lock:
            self._faults = list(faults)
            if seed is not None:
                self._rng = random.Random(seed)

    def add_fault(self, fault: Fault) -> None:
        """Append one rule."""
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        """Drop every rule and reset the counters (requests still running are no longer counted)."""
        with self._lock:
            self._faults = []
            self._records = []
            self._generation += 1
            self.active = 0
            self.max_active = 0

    @property
    def faults(self) -> list[Fault]:
        """A copy of the current rules (``times`` shows what is left)."""
        with self._lock:
            return [Fault(**asdict(f)) for f in self._faults]

    @property
    def records(self) -> list[RequestRecord]:
        """A copy of what was seen so far, in arrival order."""
        with self._lock:
            return list(self._records)

    def bytes_sent(self, path: str | None = None) -> int:
        """Body bytes sent, for one path or for all."""
        return sum(r.body_bytes for r in self.records if path is None or r.path == path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == self.admin_path:
            await self._admin(scope, receive, send)
            return
        record, fault = self._enter(scope)
        tracked = self._tracking_send(send, record)
        try:
            if fault is None:
                await self.app(scope, receive, tracked)
            else:
                await _apply(fault, self.app, scope, receive, tracked)
        finally:
            self._leave(record)

    def _enter(self, scope: Scope) -> tuple[RequestRecord, Fault | None]:
        headers = _header_map(scope)
        with self._lock:
            record = RequestRecord(scope["method"], scope["path"], headers.get("range"), generation=self._generation)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self._records.append(record)
            fault = self._pick(scope["method"], scope["path"], "range" in headers)
            record.fault = None if fault is None else fault.kind
        return record, fault

    def _pick(self, method: str, path: str, ranged: bool) -> Fault | None:
        for fault in self._faults:
            if not fault.matches(method, path, ranged):
                continue
            if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                continue
            if fault.times is not None:
                fault.times -= 1
            return fault
        return None

    def _leave(self, record: RequestRecord) -> None:
        with self._lock:
            if not record.done:
                record.done = True
                if record.generation == self._generation:
                    self.active -= 1

    def _tracking_send(self, send: Send, record: RequestRecord) -> Send:
        declared: list[int] = []

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                declared.extend(int(v) for k, v in message.get("headers", []) if k.lower() == b"content-length")
            elif message["type"] == "http.response.body":
                record.body_bytes += len(message.get("body", b""))
                complete = bool(declared) and record.body_bytes >= declared[0]
                if complete or not message.get("more_body", False):
                    self._leave(record)  # before the client can see the last byte
            await send(message)

        return tracked

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "POST":
            body = await _read_body(receive)
            try:
                doc = json.loads(body or b"{}")
                rules = [Fault.from_dict(d) for d in doc.get("faults", [])]
            except (ValueError, TypeError, AttributeError) as exc:
                await _send_json(send, 400, {"error": str(exc)})
                return
            self.set_faults(rules, seed=doc.get("seed"))
        elif method == "DELETE":
            self.clear()
        elif method != "GET":
            await _send_json(send, 405, {"error": "use GET, POST or DELETE"})
            return
        await _send_json(send, 200, self._summary())

    def _summary(self) -> dict[str, Any]:
        records = self.records
        return {
            "faults": [f.to_dict() for f in self.faults],
            "requests": len(records),
            "faulted": sum(1 for r in records if r.fault),
            "body_bytes": sum(r.body_bytes for r in records),
            "active": self.active,
            "max_active": self.max_active,
        }


async def _apply(fault: Fault, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    if fault.kind == "status":
        extra = {"retry-after": fault.retry_after} if fault.retry_after else {}
        await _send_plain(send, fault.status, f"injected fault: {fault.status}\n", extra)
        return
    if fault.kind == "redirect":
        status = fault.status if 300 <= fault.status < 400 else 302
        await _send_plain(send, status, f"see {fault.location}\n", {"location": fault.location or "/"})
        return
    if fault.kind == "ignore_range":
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"range", b"if-range")]
        await app({**scope, "headers": headers}, receive, _without_accept_ranges(send))
        return
    if fault.kind == "delay" and fault.after_bytes <= 0:
        await asyncio.sleep(fault.delay_s)
        await app(scope, receive, send)
        return
    wrapped = _BodyFault(fault, scope, send)
    try:
        await app(scope, receive, wrapped)
    except _Abort:
        return
    except BaseExceptionGroup as group:
        if not all(isinstance(e, _Abort) for e in group.exceptions):
            raise


class _BodyFault:
    """A ``send`` wrapper that damages the response body at a given position."""

    def __init__(self, fault: Fault, scope: Scope, send: Send) -> None:
        self.fault = fault
        self.scope = scope
        self.send = send
        self.pos = 0
        self.announced: int | None = None
        self.fired = False
        self.head = scope["method"] == "HEAD"

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            await self._start(message)
            return
        if message["type"] != "http.response.body" or self.head:
            await self.send(message)
            return
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        handler = getattr(self, "_" + self.fault.kind)
        await handler(body, more)
        self.pos += len(body)

    async def _start(self, message: Message) -> None:
        if self.fault.kind in ("reset", "truncate") and self.fault.after_bytes < 0:
            self._cut(rst=self.fault.kind == "reset")
        if self.fault.kind == "wrong_length":
            message = dict(message)
            message["headers"], self.announced = _shift_length(message["headers"], self.fault.length_delta)
        await self.send(message)

    async def _reset(self, body: bytes, more: bool) -> None:
        await self._cut_at(body, more, rst=True)

    async def _truncate(self, body: bytes, more: bool) -> None:
        await self._cut_at(body, more, rst=False)

    async def _cut_at(self, body: bytes, more: bool, *, rst: bool) -> None:
        keep = self.fault.after_bytes - self.pos
        if keep >= len(body) and more:
            await self.send({"type": "http.response.body", "body": body, "more_body": True})
            return
        if keep > 0:
            await self.send({"type": "http.response.body", "body": body[:keep], "more_body": True})
        self._cut(rst=rst)

    async def _delay(self, body: bytes, more: bool) -> None:
        split = self.fault.after_bytes - self.pos
        if self.fired or split < 0 or split >= len(body):
            await self.send({"type": "http.response.body", "body": body, "more_body": more})
            return
        self.fired = True
        await self.send({"type": "http.response.body", "body": body[:split], "more_body": True})
        await asyncio.sleep(self.fault.delay_s)
        await self.send({"type": "http.response.body", "body": body[split:], "more_body": more})

    async def _corrupt(self, body: bytes, more: bool) -> None:
        start = max(self.fault.after_bytes - self.pos, 0)
        stop = min(self.fault.after_bytes + self.fault.count - self.pos, len(body))
        if start < stop:
            data = bytearray(body)
            for i in range(start, stop):
                data[i] ^= 0xFF
            body = bytes(data)
        await self.send({"type": "http.response.body", "body": body, "more_body": more})

    async def _wrong_length(self, body: bytes, more: bool) -> None:
        if self.announced is None:
            await self.send({"type": "http.response.body", "body": body, "more_body": more})
            return
        room = self.announced - self.pos
        if len(body) >= room and self.fault.length_delta < 0:
            await self.send({"type": "http.response.body", "body": body[: max(room, 0)], "more_body": False})
            raise _Abort
        if not more and self.fault.length_delta > 0:
            await self.send({"type": "http.response.body", "body": body, "more_body": True})
            self._cut(rst=False)
        await self.send({"type": "http.response.body", "body": body, "more_body": more})

    def _cut(self, *, rst: bool) -> None:
        """End the connection now: RST (``SO_LINGER`` 0) or FIN; then stop the app."""
        transport = CONNECTIONS.get(self.scope)
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if rst and sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if rst:
                transport.abort()
            else:
                transport.close()
        raise _Abort


def _without_accept_ranges(send: Send) -> Send:
    """Hide ``Accept-Ranges`` too, so the server looks like one that never heard of ranges."""

    async def stripped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message["headers"] if k.lower() != b"accept-ranges"]
            message = {**message, "headers": headers}
        await send(message)

    return stripped


def _shift_length(headers: Sequence[tuple[bytes, bytes]], delta: int) -> tuple[list[tuple[bytes, bytes]], int | None]:
    out: list[tuple[bytes, bytes]] = []
    announced: int | None = None
    for key, value in headers:
        if key.lower() == b"content-length":
            announced = max(int(value) + delta, 0)
            value = str(announced).encode()
        out.append((key, value))
    return out, announced


def _header_map(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_plain(send: Send, status: int, text: str, extra: Mapping[str, str]) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_json(send: Send, status: int, doc: Any) -> None:
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
