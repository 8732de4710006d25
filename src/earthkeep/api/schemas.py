"""Response models shared by the routers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorOut(BaseModel):
    """Every error the API answers (outside /stac): what kind, the details, the trace id to quote."""

    error: str = Field(description="InvalidInput, NotFound, Conflict, Unauthorized, Forbidden, PayloadTooLarge, ...")
    detail: str | list[dict[str, Any]] = Field(
        description="a sentence, or for request validation one entry per bad parameter: {loc, msg, type}")
    trace_id: str | None = None


class AssetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    store_key: str
    size: int
    sha256: str | None
    media_type: str | None
    roles: list[str]


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    collection: str
    item_id: str
    start_datetime: datetime | None
    end_datetime: datetime | None
    bbox: list[float] | None = None
    properties: dict[str, Any]
    created_at: datetime
    last_accessed_at: datetime | None
    assets: list[AssetOut]

    @classmethod
    def of(cls, item: Any) -> ItemOut:
        out = cls.model_validate(item)
        if item.west is not None:
            out.bbox = [item.west, item.south, item.east, item.north]
        return out


class ItemPageOut(BaseModel):
    items: list[ItemOut]
    next: str | None


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str
    status: str
    priority: int
    attempts: int
    max_attempts: int
    dedupe_key: str | None
    payload: dict[str, Any]
    run_after: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    result: dict[str, Any] | None
    trace_id: str | None


class JobPageOut(BaseModel):
    jobs: list[JobOut]
    next: str | None


class JobIn(BaseModel):
    kind: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any] = {}
    dedupe_key: str | None = Field(None, max_length=500)
    priority: int = Field(0, ge=-1000, le=1000, description="higher runs first")


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    source: str
    collection: str | None
    status: str
    started_at: datetime
    completed_at: datetime | None
    records_collected: int
    bytes_collected: int
    records_failed: int
    error_message: str | None
    details: dict[str, Any]
