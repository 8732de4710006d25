"""Per-API-key token buckets (observations per second, with a burst)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """``take(key, n)`` spends ``n`` tokens or says how long to wait; ``rate`` 0 disables it.

    The limit is per process: with several API processes each enforces it on its own.
    """

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, n: int) -> float:
        """0.0 when allowed (tokens spent), else the seconds to wait before ``n`` tokens are there."""
        if self.rate <= 0:
            return 0.0
        cost = min(n, self.burst)
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (cost - tokens) / self.rate
