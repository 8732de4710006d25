"""The priority score: each documented component."""

from datetime import UTC, datetime, timedelta

from earthkeep.rescue.priority import Signals, components, score
from earthkeep.rescue.settings import RescueSettings

NOW = datetime(2024, 6, 1, tzinfo=UTC)
S = RescueSettings(watch_orgs=["epa-gov"])


def sig(**kw):
    base = {"gone": False, "failing": False, "organization": "noaa-gov", "modified": NOW, "popularity": None,
            "verified_copies": 0, "size": 1000, "boost": 0.0}
    return Signals(**{**base, **kw})


def parts(**kw):
    return components(sig(**kw), S, max_popularity=1000, now=NOW)


def test_each_signal_adds_its_weight():
    assert parts()["gone"] == 0 and parts(gone=True)["gone"] == S.weight_gone
    assert parts(failing=True)["failing"] == S.weight_failing
    assert parts(organization="epa-gov")["watch"] == S.weight_watch
    assert parts(modified=NOW - timedelta(days=S.age_full_days * 2))["age"] == S.weight_age
    assert parts(popularity=1000)["popularity"] == S.weight_popularity
    assert parts(boost=7.5)["boost"] == 7.5


def test_verified_copies_lower_the_score_until_replicated():
    assert parts(verified_copies=0)["copies"] == S.weight_copies
    assert parts(verified_copies=1)["copies"] == S.weight_copies / 2
    assert parts(verified_copies=5)["copies"] == 0


def test_size_penalty_grows_with_size_and_unknown_is_half():
    assert parts(size=1000)["size"] == 0
    assert parts(size=10**12)["size"] == -S.weight_size
    assert parts(size=None)["size"] == -S.weight_size / 2


def test_gone_dataset_outranks_a_popular_one():
    assert score(parts(gone=True)) > score(parts(popularity=1000, organization="epa-gov"))
