"""Redis cache of query results, invalidated per station by a version counter.

Every station has a counter ``earthkeep:ingest:v:<station>``; the writer
``INCR``s it after each commit that added rows for that station. Cached answers
live under a key that contains the counter's value, so new data makes every
older answer unreachable at once (and they expire after ``ttl_s``). Redis being
down never fails a query: the answer is computed and a warning logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import orjson
import structlog

log = structlog.get_logger(__name__)
PREFIX = "earthkeep:ingest"


class QueryCache(Protocol):
    def get_or_compute(self, station: str, kind: str, params: dict[str, Any],
                       compute: Callable[[], Any]) -> tuple[bytes, bool]:
        """The cached answer as JSON bytes (and True), or ``compute()`` serialised and stored (and False)."""
        ...

    def invalidate(self, stations: Iterable[str]) -> None:
        """Make the cached answers of ``stations`` unreachable."""
        ...


class NoCache:
    """Used without ``REDIS_URL``: always computes."""

    def get_or_compute(self, station: str, kind: str, params: dict[str, Any],
                       compute: Callable[[], Any]) -> tuple[bytes, bool]:
        return orjson.dumps(compute()), False

    def invalidate(self, stations: Iterable[str]) -> None:
        return None


class RedisCache:
    """Query answers in Redis, keyed by station, station version, query kind and parameters."""

    def __init__(self, url: str, *, ttl_s: int = 300, timeout_s: float = 0.5) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.ttl_s = ttl_s

    def _key(self, station: str, version: bytes | None, kind: str, params: dict[str, Any]) -> str:
        digest = hashlib.sha1(orjson.dumps(params, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return f"{PREFIX}:q:{station}:{(version or b'0').decode()}:{kind}:{digest}"

    def get_or_compute(self, station: str, kind: str, params: dict[str, Any],
                       compute: Callable[[], Any]) -> tuple[bytes, bool]:
        try:
            version: Any = self._redis.get(f"{PREFIX}:v:{station}")
            key = self._key(station, version, kind, params)
            hit: Any = self._redis.get(key)
        except self._errors as exc:
            log.warning("ingest.cache_unavailable", error=repr(exc))
            return orjson.dumps(compute()), False
        if hit is not None:
            return bytes(hit), True
        value = orjson.dumps(compute())
        try:
            self._redis.set(key, value, ex=self.ttl_s)
        except self._errors as exc:
            log.warning("ingest.cache_unavailable", error=repr(exc))
        return value, False

    def invalidate(self, stations: Iterable[str]) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for station in stations:
                pipe.incr(f"{PREFIX}:v:{station}")
            pipe.execute()
        except self._errors as exc:
            log.warning("ingest.cache_invalidation_failed", error=repr(exc), ttl_s=self.ttl_s)

    def close(self) -> None:
        self._redis.close()


def make_cache(url: str | None, ttl_s: int) -> QueryCache:
    return RedisCache(url, ttl_s=ttl_s) if url else NoCache()
