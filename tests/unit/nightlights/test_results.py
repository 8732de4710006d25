"""Time series, statistics and CSV of monthly results (SQLite catalog)."""

import csv
import io

import pytest
from shapely.geometry import box

from earthkeep.catalog.db import create_db_engine, session_factory
from earthkeep.catalog.migrate import upgrade
from earthkeep.nightlights import areas
from earthkeep.nightlights.geometry import check_geometry
from earthkeep.nightlights.results import TIMESERIES_FIELDS, statistics, timeseries, to_csv, upsert_result


def _metrics(sol):
    return {"sum_radiance": sol, "mean_radiance": sol / 10 if sol else None, "median_radiance": 1.0,
            "lit_pixels": 3.0, "lit_area_km2": 4.5, "lit_fraction": 0.25, "valid_area_km2": 18.0,
            "area_km2": 20.0, "valid_fraction": 0.9, "mean_valid_nights": 20.0, "pixels": 12}


@pytest.fixture
def session(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path}/c.db")
    upgrade(engine)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


def test_timeseries_upserts_and_change_against_the_first_month(session):
    area = areas.create_area(session, check_geometry(box(36.5, -1.5, 37, -1)), name="a")
    for month, sol in (("2023-02", 110.0), ("2023-01", 100.0), ("2023-03", 95.0)):
        upsert_result(session, area_id=area.id, month=month, source="laads_download", metrics=_metrics(sol),
                      threshold=0.5, composite_key=None, job_id=None)
    upsert_result(session, area_id=area.id, month="2023-03", source="upload", metrics=_metrics(120.0),
                  threshold=0.5, composite_key="k", job_id=7)
    rows = timeseries(session, area.id)
    assert [r["month"] for r in rows] == ["2023-01", "2023-02", "2023-03"]
    assert [r["change_vs_first_pct"] for r in rows] == [0.0, pytest.approx(10.0), pytest.approx(20.0)]
    assert rows[2]["source"] == "upload"
    assert [r["month"] for r in timeseries(session, area.id, start="2023-02", end="2023-02")] == ["2023-02"]
    stats = statistics(rows)
    assert stats["months"] == 3 and stats["change_pct"] == pytest.approx(20.0)
    assert stats["trend_pct_per_year"] == pytest.approx(100 * 12 * 10 / 110)
    assert stats["sum_radiance_min"] == 100.0 and stats["lit_area_km2_last"] == 4.5


def test_statistics_of_an_empty_series_and_csv():
    assert statistics([])["first_month"] is None
    rows = [{"month": "2023-01", "source": "x", "sum_radiance": None, "change_vs_first_pct": None}]
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows, TIMESERIES_FIELDS))))
    assert parsed[0]["month"] == "2023-01" and parsed[0]["sum_radiance"] == ""
    assert list(parsed[0]) == list(TIMESERIES_FIELDS)
