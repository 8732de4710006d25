"""Posttroll messages of the granules domain: what a file, dataset or status message carries.

The wire format is the VIIRS collector's: ``posttroll.message.Message(subject,
type, data)`` with naive UTC datetimes, so that ``Message.decode`` gives the same
values the original subscribers printed. In the outbox and on NATS the data is
JSON (datetimes as ISO 8601 strings); :func:`to_wire` turns it back.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from earthkeep.config import mask_url
from earthkeep.sources.gina import SENSOR, SdrName

if TYPE_CHECKING:
    from earthkeep.store.base import Store

TIME_KEYS = ("start_time", "end_time", "proctime")
FILE_KEYS = ("uid", "uri", "platform_name", "orig_platform_name", "sensor", "segment", "orbit_number",
             "start_time", "end_time", "proctime")


def file_data(sdr: SdrName, name: str, uri: str) -> dict[str, Any]:
    """The data of a ``file`` message, JSON-ready (the README's keys, nothing else)."""
    return {
        "uid": name,
        "uri": uri,
        "platform_name": sdr.platform_name,
        "orig_platform_name": sdr.orig_platform_name,
        "sensor": [SENSOR],
        "segment": sdr.segment,
        "orbit_number": sdr.orbit_number,
        "start_time": sdr.start_time.isoformat(),
        "end_time": sdr.end_time.isoformat(),
        "proctime": sdr.proctime.isoformat(),
    }


def granule_uri(store: Store, key: str, name: str, uri_base: str | None = None) -> str:
    """Where subscribers find the file: ``uri_base/name``, the local path, or the store URL (no credentials)."""
    if uri_base:
        return f"{uri_base.rstrip('/')}/{name}"
    base = getattr(store, "url", "") or ""
    if base.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return f"{unquote(urlsplit(base).path).rstrip('/')}/{key}"
    return f"{mask_url(base).rstrip('/')}/{key}" if base else key


def to_wire(data: dict[str, Any]) -> dict[str, Any]:
    """JSON data -> posttroll data: ISO strings of the time keys become naive UTC datetimes."""
    out = dict(data)
    for k in TIME_KEYS:
        v = out.get(k)
        if isinstance(v, str):
            out[k] = _naive(datetime.fromisoformat(v))
    if isinstance(out.get("dataset"), list):
        out["dataset"] = [dict(d) for d in out["dataset"]]
    return out


def to_json(data: dict[str, Any]) -> dict[str, Any]:
    """posttroll data -> JSON data (datetimes as ISO strings, naive UTC)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, datetime):
            out[k] = _naive(v).isoformat()
        elif isinstance(v, list):
            out[k] = [to_json(x) if isinstance(x, dict) else x for x in v]
        elif isinstance(v, dict):
            out[k] = to_json(v)
        else:
            out[k] = v
    return out


def _naive(t: datetime) -> datetime:
    from datetime import UTC

    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def encode(subject: str, atype: str, data: dict[str, Any]) -> str:
    """The posttroll wire string of a message (what ``Message.decode`` reads)."""
    from posttroll.message import Message

    return str(Message(subject, atype, to_wire(data)).encode())
