"""API keys: created with scopes, stored as sha256 only, checked on every write.

The API checks a key against the catalog at most once per ``key_cache_s``
(:class:`KeyCache`, 2 s by default) and records ``last_used_at`` then; a
revocation made in the same process takes effect at once, one made by another
process (``earthkeep keys revoke``) within that time.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from earthkeep.catalog.tables import ApiKey, utcnow
from earthkeep.errors import Forbidden, InvalidInput, NotFound, Unauthorized

SCOPES = ("read", "ingest", "node", "admin")
_PREFIX = "ek_"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, name: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
    """Create a key; the secret is returned once and never stored."""
    wanted = sorted(set(scopes))
    bad = [s for s in wanted if s not in SCOPES]
    if bad or not wanted:
        raise InvalidInput(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(wanted) or 'none'}")
    secret = _PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(id=str(uuid.uuid4()), name=name, prefix=secret[:10], key_hash=_hash(secret),
                 scopes=wanted, created_at=utcnow())
    session.add(key)
    session.flush()
    return key, secret


def authenticate(session: Session, secret: str | None, scope: str) -> ApiKey:
    """The key for ``secret`` if valid, not revoked and holding ``scope`` (admin holds all)."""
    key = verify(session, secret)
    check_scope(key, scope)
    return key


def verify(session: Session, secret: str | None) -> ApiKey:
    """The key for ``secret`` if it exists and is not revoked; its ``last_used_at`` is set to now."""
    if not secret:
        raise Unauthorized("this endpoint needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
    key = session.scalars(select(ApiKey).where(ApiKey.key_hash == _hash(secret))).one_or_none()
    if key is None or key.revoked_at is not None:
        raise Unauthorized("API key is unknown or revoked")
    session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=utcnow()))
    return key


def check_scope(key: ApiKey, scope: str) -> None:
    """Raise :class:`Forbidden` unless ``key`` holds ``scope`` (admin holds all)."""
    if scope not in key.scopes and "admin" not in key.scopes:
        raise Forbidden(f"API key {key.name!r} lacks the {scope!r} scope (it has: {', '.join(key.scopes)})")


_revocations = 0  # bumped by revoke_key: every KeyCache of this process forgets what it holds


class KeyCache:
    """Keys verified within the last ``ttl_s`` seconds, by the sha256 of their secret (0 disables it)."""

    def __init__(self, ttl_s: float, *, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self._clock = clock
        self._keys: dict[str, tuple[float, ApiKey]] = {}
        self._epoch = _revocations
        self._lock = threading.Lock()

    def get(self, secret: str | None) -> ApiKey | None:
        """The cached key for ``secret``, or None (look it up with :func:`verify`, then :meth:`put` it)."""
        if not secret or self.ttl_s <= 0:
            return None
        if self._epoch != _revocations:
            self.clear()
        hit = self._keys.get(_hash(secret))
        if hit is None or self._clock() - hit[0] > self.ttl_s:
            return None
        return hit[1]

    def put(self, secret: str, key: ApiKey) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._keys) >= self.max_keys:
                self._keys.clear()
            self._keys[_hash(secret)] = (self._clock(), key)

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self._epoch = _revocations


def revoke_key(session: Session, key_id_or_prefix: str) -> ApiKey:
    key = session.scalars(
        select(ApiKey).where((ApiKey.id == key_id_or_prefix) | (ApiKey.prefix == key_id_or_prefix))
    ).first()
    if key is None:
        raise NotFound(f"no API key with id or prefix {key_id_or_prefix!r}")
    key.revoked_at = key.revoked_at or utcnow()
    global _revocations
    _revocations += 1
    return key


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))
