"""The run ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from earthkeep.api.deps import ReadDep, SessionDep
from earthkeep.api.schemas import RunOut
from earthkeep.catalog.runs import list_runs

router = APIRouter(tags=["runs"])


@router.get("/runs", response_model=list[RunOut])
def runs(
    session: SessionDep, _: ReadDep, source: str | None = None, status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RunOut]:
    return [RunOut.model_validate(r) for r in list_runs(session, source=source, status=status, limit=limit)]
