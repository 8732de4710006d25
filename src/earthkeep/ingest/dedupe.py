"""A bounded in-memory set of recently written observation keys (by count and by age)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable


class DedupeCache:
    """Remembers up to ``max_items`` keys for at most ``max_age_s`` seconds, oldest evicted first.

    The consumer adds keys only *after* their batch committed, so a batch that
    failed and is redelivered is never dropped here by mistake; the database's
    ``ON CONFLICT DO NOTHING`` stays the final word.
    """

    def __init__(self, max_items: int, max_age_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_items = max_items
        self.max_age_s = max_age_s
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        added = self._seen.get(key)  # type: ignore[call-overload]
        if added is None:
            return False
        if self._clock() - added > self.max_age_s:
            del self._seen[key]  # type: ignore[arg-type]
            return False
        return True

    def add_many(self, keys: Iterable[str]) -> None:
        """Remember ``keys`` as seen now, then evict by age and by count."""
        if self.max_items <= 0:
            return
        now = self._clock()
        seen = self._seen
        for key in keys:
            seen[key] = now
            seen.move_to_end(key)
        horizon = now - self.max_age_s
        while seen:
            oldest_key, added = next(iter(seen.items()))
            if added >= horizon and len(seen) <= self.max_items:
                break
            del seen[oldest_key]
