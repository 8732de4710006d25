"""The transfer engine: byte ranges, parallel segments, resume, retries, verification.

Sources say *what* to fetch (:class:`TransferRequest`); :class:`TransferEngine`
fetches it into a :class:`~earthkeep.store.base.Store`.
"""

from earthkeep.transfer.engine import TransferEngine, TransferRequest, TransferResult
from earthkeep.transfer.http import RetryPolicy
from earthkeep.transfer.probe import RemoteInfo
from earthkeep.transfer.ranges import (
    ByteRange,
    format_range,
    merge_ranges,
    parse_content_range,
    split_segments,
)
from earthkeep.transfer.urls import check_url

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
