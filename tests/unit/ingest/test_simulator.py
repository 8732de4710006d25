"""The simulator: deterministic, physically plausible, faults as asked."""

import itertools
from datetime import UTC, datetime, timedelta

from earthkeep.ingest.models import validate_records
from earthkeep.ingest.simulator import Simulator, make_stations

T0 = datetime(2024, 7, 1, tzinfo=UTC)


def test_clean_records_are_all_valid_and_distinct():
    sim = Simulator(make_stations(4), T0, step_s=600)
    records = sim.batch(2000)
    good, bad = validate_records(records, known_station={s.id for s in sim.stations}, now=T0 + timedelta(days=30))
    assert not bad and len({g.key for g in good}) == 2000 == len(sim.expected)


def test_same_seed_same_records():
    a = Simulator(make_stations(3), T0, seed=9, duplicate_rate=0.1, invalid_rate=0.1).batch(300)
    b = Simulator(make_stations(3), T0, seed=9, duplicate_rate=0.1, invalid_rate=0.1).batch(300)
    assert a == b


def test_afternoons_are_warmer_than_dawns():
    sim = Simulator(make_stations(1, seed=2), T0, step_s=600)
    records = sim.batch(6 * 24 * 20)
    lon = sim.stations[0].longitude

    def solar_hour(r):
        t = datetime.fromisoformat(r["timestamp"])
        return (t.hour + t.minute / 60 + lon / 15) % 24

    dawn = [r["temperature"] for r in records if 3 <= solar_hour(r) < 5]
    afternoon = [r["temperature"] for r in records if 14 <= solar_hour(r) < 16]
    assert sum(afternoon) / len(afternoon) > sum(dawn) / len(dawn) + 2


def test_faults_duplicates_late_and_invalid():
    sim = Simulator(make_stations(5), T0, duplicate_rate=0.2, late_rate=0.1, invalid_rate=0.1)
    records = sim.batch(3000) + sim.flush()
    good, bad = validate_records(records, known_station={s.id for s in sim.stations}, now=T0 + timedelta(days=9))
    assert len(bad) == sim.invalid_sent > 0
    assert len(good) - len({g.key for g in good}) == sim.duplicates_sent > 0
    assert {g.key for g in good} == sim.expected
    stamps = [g.ts for g in good if g.station_id == sim.stations[0].id]
    assert any(b < a for a, b in itertools.pairwise(stamps))  # some arrive out of order


def test_without_keep_keys_the_count_matches_and_no_key_is_kept():
    """The server's generator runs for hours: it counts distinct valid records instead of keeping every key."""
    kw = dict(duplicate_rate=0.2, late_rate=0.1, invalid_rate=0.1, seed=4)
    kept = Simulator(make_stations(5), T0, **kw)
    lean = Simulator(make_stations(5), T0, keep_keys=False, **kw)
    a, b = kept.batch(3000) + kept.flush(), lean.batch(3000) + lean.flush()
    assert a == b and lean.expected == set()
    assert lean.valid_sent == kept.valid_sent == len(kept.expected)
