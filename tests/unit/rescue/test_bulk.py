"""Bulk-write helpers: JSON text, SQL built for each dialect, the collector's threshold during runs."""

import gc
import json
import sys

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from earthkeep.rescue.bulk import GC_THRESHOLD, SWITCH_INTERVAL_S, _BulkTuning, _insert_sql, _update_sql, encode_json
from earthkeep.rescue.catalog import ASSETS, DATASETS


def test_json_text_is_exact_even_beyond_64_bits():
    value = {"size": 10**30, "neg": -(2**70), "text": "ünï ☃", "list": [1, 2.5, None, True]}
    assert json.loads(encode_json(value)) == value
    assert encode_json({"a": [1, "x"]}) == '{"a":[1,"x"]}'


def test_insert_sql_has_one_value_group_per_row_and_casts_json_on_postgresql():
    lite = _insert_sql(sqlite.dialect(), DATASETS, ("id", "meta", "groups"), 3)
    assert lite == "INSERT INTO rescue_datasets (id, meta, groups) VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?)"
    pg = _insert_sql(postgresql.psycopg.dialect(), DATASETS, ("id", "meta"), 2)
    assert pg == "INSERT INTO rescue_datasets (id, meta) VALUES (%s, CAST(%s AS JSONB)), (%s, CAST(%s AS JSONB))"
    upd = _update_sql(sqlite.dialect(), ASSETS, ("state", "updated_at"))
    assert upd == "UPDATE rescue_assets SET state = ?, updated_at = ? WHERE id = ?"


@pytest.fixture
def defaults():
    saved = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(700, 10, 10)
    sys.setswitchinterval(0.005)
    yield
    gc.set_threshold(*saved[0])
    sys.setswitchinterval(saved[1])


def test_tuning_holds_until_the_last_run_leaves(defaults):
    tuning = _BulkTuning(GC_THRESHOLD, SWITCH_INTERVAL_S)
    with tuning:
        assert gc.get_threshold() == (GC_THRESHOLD, 10, 10)
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
        with tuning:  # a second run (another thread) inside the first
            assert gc.get_threshold()[0] == GC_THRESHOLD
        assert gc.get_threshold()[0] == GC_THRESHOLD  # the first run is still inside
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    assert gc.get_threshold() == (700, 10, 10)
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_tuning_is_undone_after_an_error_and_leaves_better_settings_alone(defaults):
    tuning = _BulkTuning(GC_THRESHOLD, SWITCH_INTERVAL_S)
    with pytest.raises(ValueError), tuning:
        raise ValueError("boom")
    assert gc.get_threshold() == (700, 10, 10)
    assert sys.getswitchinterval() == pytest.approx(0.005)
    gc.set_threshold(10**6, 10, 10)
    sys.setswitchinterval(0.0005)
    with tuning:
        assert gc.get_threshold()[0] == 10**6
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    assert gc.get_threshold()[0] == 10**6
    assert sys.getswitchinterval() == pytest.approx(0.0005)
