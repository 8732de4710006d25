"""The message outbox: written with what it announces, published by the announcer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from earthkeep.catalog.tables import utcnow
from earthkeep.granules.tables import GranuleMessage


def add_message(session: Session, subject: str, atype: str, data: dict[str, Any]) -> GranuleMessage:
    """Queue one message in the caller's transaction."""
    msg = GranuleMessage(subject=subject, type=atype, data=data, uid=data.get("uid"), created_at=utcnow())
    session.add(msg)
    session.flush()
    return msg


def unsent(session: Session, limit: int = 500) -> list[GranuleMessage]:
    """Messages not yet published, oldest first."""
    stmt = select(GranuleMessage).where(GranuleMessage.sent_at.is_(None)).order_by(GranuleMessage.id).limit(limit)
    return list(session.scalars(stmt))


def mark_sent(session: Session, ids: Sequence[int], when: datetime | None = None) -> None:
    if ids:
        session.execute(update(GranuleMessage).where(GranuleMessage.id.in_(list(ids)))
                        .values(sent_at=when or utcnow()))


def recent(session: Session, *, subject: str | None = None, limit: int = 100) -> list[GranuleMessage]:
    """The newest messages (for the API and the CLI)."""
    stmt = select(GranuleMessage).order_by(GranuleMessage.id.desc()).limit(limit)
    if subject:
        stmt = stmt.where(GranuleMessage.subject == subject)
    return list(session.scalars(stmt))
