"""Monthly results: store (idempotent per area and month), time series, statistics, CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from earthkeep.catalog.tables import utcnow
from earthkeep.nightlights.months import parse_month
from earthkeep.nightlights.tables import METRIC_COLUMNS, Result

TIMESERIES_FIELDS = ("month", "source", *METRIC_COLUMNS, "change_vs_first_pct", "threshold")


def upsert_result(session: Session, *, area_id: int, month: str, source: str, metrics: dict[str, Any],
                  threshold: float, composite_key: str | None, job_id: int | None) -> Result:
    """Create or replace the metrics of ``area_id`` for ``month`` (one row per area and month)."""
    row = session.scalars(select(Result).where(Result.area_id == area_id, Result.month == month)).one_or_none()
    if row is None:
        row = Result(area_id=area_id, month=month, created_at=utcnow())
        session.add(row)
    row.source, row.threshold, row.composite_key, row.job_id = source, threshold, composite_key, job_id
    for col in METRIC_COLUMNS:
        setattr(row, col, metrics.get(col))
    row.updated_at = utcnow()
    session.flush()
    return row


def get_result(session: Session, area_id: int, month: str) -> Result | None:
    return session.scalars(select(Result).where(Result.area_id == area_id, Result.month == month)).one_or_none()


def timeseries(session: Session, area_id: int, *, start: str | None = None,
               end: str | None = None) -> list[dict[str, Any]]:
    """Monthly metrics in month order, with the change of the sum of lights against the first month."""
    stmt = select(Result).where(Result.area_id == area_id).order_by(Result.month)
    if start:
        parse_month(start)
        stmt = stmt.where(Result.month >= start)
    if end:
        parse_month(end)
        stmt = stmt.where(Result.month <= end)
    rows = list(session.scalars(stmt))
    base = rows[0].sum_radiance if rows else None
    out = []
    for r in rows:
        d: dict[str, Any] = {"month": r.month, "source": r.source, "threshold": r.threshold}
        d.update({c: getattr(r, c) for c in METRIC_COLUMNS})
        d["change_vs_first_pct"] = _pct(r.sum_radiance, base)
        out.append(d)
    return out


def _pct(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return 100.0 * (value - base) / base


def statistics(series: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Summary of a time series: extent, sum-of-lights range, change, trend, lit area."""
    sol = [(i, r["sum_radiance"]) for i, r in enumerate(series) if r["sum_radiance"] is not None]
    lit = [r["lit_area_km2"] for r in series]
    fractions = [r["lit_fraction"] for r in series if r["lit_fraction"] is not None]
    values = [v for _, v in sol]
    return {
        "months": len(series),
        "first_month": series[0]["month"] if series else None,
        "last_month": series[-1]["month"] if series else None,
        "months_with_data": len(sol),
        "sum_radiance_first": values[0] if values else None,
        "sum_radiance_last": values[-1] if values else None,
        "sum_radiance_mean": sum(values) / len(values) if values else None,
        "sum_radiance_min": min(values) if values else None,
        "sum_radiance_max": max(values) if values else None,
        "change_pct": _pct(values[-1], values[0]) if values else None,
        "trend_pct_per_year": _trend(sol),
        "lit_area_km2_max": max(lit) if lit else None,
        "lit_area_km2_last": lit[-1] if lit else None,
        "lit_fraction_mean": sum(fractions) / len(fractions) if fractions else None,
    }


def _trend(points: Sequence[tuple[int, float]]) -> float | None:
    """Least-squares slope of the sum of lights, as % of its mean per 12 months."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0 or my == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return 100.0 * 12 * slope / my


def to_csv(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> str:
    """CSV text with a header; None becomes an empty cell, floats keep full precision."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for r in rows:
        w.writerow(["" if r.get(f) is None or (isinstance(r.get(f), float) and math.isnan(r[f])) else r[f]
                    for f in fields])
    return buf.getvalue()
