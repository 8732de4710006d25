"""A NATS sink for bus events: JSON on ``<prefix>.<event type>`` (JetStream dedupe by ``Nats-Msg-Id``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import structlog

from earthkeep.events.base import Event

log = structlog.get_logger(__name__)


def _default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def event_json(event: Event) -> bytes:
    """The event as JSON bytes (``posttroll`` data included as ``subject``/``type``/``data``)."""
    data = dict(event.data)
    msg = data.pop("posttroll", None)
    body: dict[str, Any] = {"type": event.type, "subject": event.subject, "time": event.time.isoformat(),
                            "trace_id": event.trace_id, "data": data}
    if msg:
        body["posttroll"] = {"subject": msg[0], "type": msg[1], "data": msg[2]}
    return json.dumps(body, default=_default, sort_keys=True).encode()


class NatsSink:
    """Publishes bus events to NATS; connect with :meth:`connect`, close with :meth:`close`."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self._nc: Any = None
        self.published = 0

    async def connect(self) -> NatsSink:
        import nats

        self._nc = await nats.connect(self.url, name="earthkeep-events", max_reconnect_attempts=-1,
                                      connect_timeout=5)
        return self

    def subject_for(self, event: Event) -> str:
        return f"{self.prefix}.{event.type.replace('/', '.')}"

    async def __call__(self, event: Event) -> None:
        if self._nc is None:
            return
        headers = {"Nats-Msg-Id": event.data["msg_id"]} if event.data.get("msg_id") else None
        await self._nc.publish(self.subject_for(event), event_json(event), headers=headers)
        self.published += 1

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None
