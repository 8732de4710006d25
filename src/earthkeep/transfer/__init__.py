"""The transfer engine: byte ranges, parallel segments, resume, retries, verification.

Sources say *what* to fetch (:class:`TransferRequest`); :class:`TransferEngine`
fetches it into a :class:`~earthkeep.store.base.Store`.

The names that need httpx (the engine, the retry policy, the probe) are loaded
on first use, so that importing a light submodule such as
:mod:`earthkeep.transfer.idx` (GFS inventories, settings) does not import httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from earthkeep.transfer.ranges import (
    ByteRange,
    format_range,
    merge_ranges,
    parse_content_range,
    split_segments,
)
from earthkeep.transfer.request import TransferRequest, TransferResult
from earthkeep.transfer.urls import check_url

if TYPE_CHECKING:
    from earthkeep.transfer.engine import TransferEngine
    from earthkeep.transfer.http import RetryPolicy
    from earthkeep.transfer.probe import RemoteInfo

__all__ = [
    "ByteRange",
    "RemoteInfo",
    "RetryPolicy",
    "TransferEngine",
    "TransferRequest",
    "TransferResult",
    "check_url",
    "format_range",
    "merge_ranges",
    "parse_content_range",
    "split_segments",
]


_LAZY = {"TransferEngine": "engine", "RetryPolicy": "http", "RemoteInfo": "probe"}  # name -> its module


def __getattr__(name: str) -> Any:
    """The httpx-backed names, imported when first asked for (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
