"""File claims: two collectors at once never download the same file.

A collector takes a lease on a file (one ``UPDATE`` of a free or expired row,
else one ``INSERT`` whose primary key decides between racing collectors) before
fetching it, and gives it back when the file is catalogued or has failed. The
row also keeps the last error met for the file, which the gap report shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

from sqlalchemy import Engine, delete, exc, or_, select, update

from earthkeep.catalog.db import session_factory, translate_errors
from earthkeep.catalog.tables import utcnow
from earthkeep.errors import Conflict
from earthkeep.forcing.tables import ForcingClaim


def claim(engine: Engine, file_id: str, owner: str, ttl_s: float) -> bool:
    """Take the lease on ``file_id`` for ``owner``; False when another collector holds it."""
    now = utcnow()
    until = now + timedelta(seconds=ttl_s)
    sessions = session_factory(engine)
    free = or_(ForcingClaim.owner.is_(None), ForcingClaim.owner == owner, ForcingClaim.expires_at < now)
    with translate_errors("forcing claims"), sessions.begin() as s:
        taken = s.execute(update(ForcingClaim).where(ForcingClaim.file_id == file_id, free)
                          .values(owner=owner, expires_at=until, attempts=ForcingClaim.attempts + 1, updated_at=now)
                          .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    if taken:
        return True
    try:
        with sessions.begin() as s:
            s.add(ForcingClaim(file_id=file_id, owner=owner, expires_at=until, attempts=1, updated_at=now))
    except exc.IntegrityError:
        return False
    return True


def claim_many(engine: Engine, file_ids: Iterable[str], owner: str, ttl_s: float) -> set[str]:
    """Take every free lease among ``file_ids`` in one transaction; return the ids now held by ``owner``."""
    ids = list(dict.fromkeys(file_ids))
    if not ids:
        return set()
    now = utcnow()
    until = now + timedelta(seconds=ttl_s)
    free = or_(ForcingClaim.owner.is_(None), ForcingClaim.owner == owner, ForcingClaim.expires_at < now)
    try:
        with translate_errors("forcing claims"), session_factory(engine).begin() as s:
            known = set(s.scalars(select(ForcingClaim.file_id).where(ForcingClaim.file_id.in_(ids))))
            s.execute(update(ForcingClaim).where(ForcingClaim.file_id.in_(ids), free)
                      .values(owner=owner, expires_at=until, attempts=ForcingClaim.attempts + 1, updated_at=now)
                      .execution_options(synchronize_session=False))
            s.add_all(ForcingClaim(file_id=i, owner=owner, expires_at=until, attempts=1, updated_at=now)
                      for i in ids if i not in known)
    except Conflict:  # another collector inserted one of them meanwhile: one by one instead
        return {i for i in ids if claim(engine, i, owner, ttl_s)}
    with translate_errors("forcing claims"), session_factory(engine)() as s:
        return set(s.scalars(select(ForcingClaim.file_id).where(ForcingClaim.file_id.in_(ids),
                                                                ForcingClaim.owner == owner)))


def release(engine: Engine, file_id: str, owner: str, *, error: str | None = None) -> None:
    """Give the lease back: forget the file on success, remember ``error`` on failure."""
    with translate_errors("forcing claims"), session_factory(engine).begin() as s:
        mine = (ForcingClaim.file_id == file_id, ForcingClaim.owner == owner)
        if error is None:
            s.execute(delete(ForcingClaim).where(*mine))
        else:
            s.execute(update(ForcingClaim).where(*mine)
                      .values(owner=None, expires_at=None, last_error=error[:2000], updated_at=utcnow())
                      .execution_options(synchronize_session=False))


def release_many(engine: Engine, owner: str, outcomes: Mapping[str, str | None]) -> None:
    """Give back many leases in one transaction (``file_id -> error or None``)."""
    done = [i for i, err in outcomes.items() if err is None]
    now = utcnow()
    with translate_errors("forcing claims"), session_factory(engine).begin() as s:
        if done:
            s.execute(delete(ForcingClaim).where(ForcingClaim.file_id.in_(done), ForcingClaim.owner == owner))
        for file_id, err in outcomes.items():
            if err is not None:
                s.execute(update(ForcingClaim).where(ForcingClaim.file_id == file_id, ForcingClaim.owner == owner)
                          .values(owner=None, expires_at=None, last_error=err[:2000], updated_at=now)
                          .execution_options(synchronize_session=False))


def last_errors(engine: Engine, file_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
    """``file_id -> (last error, attempts)`` for the files that failed before."""
    ids = list(file_ids)
    out: dict[str, tuple[str, int]] = {}
    with translate_errors("forcing claims"), session_factory(engine)() as s:
        for start in range(0, len(ids), 500):
            rows = s.scalars(select(ForcingClaim).where(ForcingClaim.file_id.in_(ids[start:start + 500]),
                                                        ForcingClaim.last_error.is_not(None)))
            out.update({r.file_id: (r.last_error or "", r.attempts) for r in rows})
    return out
