"""API keys: created with scopes, stored as sha256 only, checked on every write."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable

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
    if not secret:
        raise Unauthorized("this endpoint needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
    key = session.scalars(select(ApiKey).where(ApiKey.key_hash == _hash(secret))).one_or_none()
    if key is None or key.revoked_at is not None:
        raise Unauthorized("API key is unknown or revoked")
    if scope not in key.scopes and "admin" not in key.scopes:
        raise Forbidden(f"API key {key.name!r} lacks the {scope!r} scope (it has: {', '.join(key.scopes)})")
    session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=utcnow()))
    return key


def revoke_key(session: Session, key_id_or_prefix: str) -> ApiKey:
    key = session.scalars(
        select(ApiKey).where((ApiKey.id == key_id_or_prefix) | (ApiKey.prefix == key_id_or_prefix))
    ).first()
    if key is None:
        raise NotFound(f"no API key with id or prefix {key_id_or_prefix!r}")
    key.revoked_at = key.revoked_at or utcnow()
    return key


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))
