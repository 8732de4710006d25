"""The bounded dedupe cache evicts by count and by age."""

from earthkeep.ingest.dedupe import DedupeCache


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_evicts_oldest_beyond_the_count():
    cache = DedupeCache(3, 100, clock=Clock())
    cache.add_many(["a", "b", "c", "d"])
    assert "a" not in cache and all(k in cache for k in "bcd") and len(cache) == 3


def test_entries_expire_by_age():
    clock = Clock()
    cache = DedupeCache(100, 10, clock=clock)
    cache.add_many(["a"])
    clock.t = 5
    cache.add_many(["b"])
    clock.t = 12
    assert "a" not in cache and "b" in cache
    clock.t = 16
    cache.add_many(["c"])  # adding also sweeps what aged out
    assert len(cache) == 1


def test_re_adding_refreshes_a_key():
    clock = Clock()
    cache = DedupeCache(2, 10, clock=clock)
    cache.add_many(["a", "b"])
    cache.add_many(["a", "c"])
    assert "a" in cache and "c" in cache and "b" not in cache


def test_size_zero_disables_it():
    cache = DedupeCache(0, 10)
    cache.add_many(["a"])
    assert "a" not in cache


def test_a_key_added_again_lives_as_long_as_its_newest_batch():
    clock = Clock()
    cache = DedupeCache(100, 10, clock=clock)
    cache.add_many(["a", "b"])
    clock.t = 8
    cache.add_many(["b"])
    clock.t = 15  # the first batch aged out, the second did not
    recent = cache.recent()
    assert "a" not in recent and "b" in recent and len(cache) == 1


def test_count_eviction_walks_batches_oldest_first_and_keeps_the_bound():
    cache = DedupeCache(1000, 3600, clock=Clock())
    for start in range(0, 5000, 250):
        cache.add_many(range(start, start + 250))
        assert len(cache) <= 1000
    assert len(cache) == 1000 and 3999 not in cache and all(k in cache for k in (4000, 4999))


def test_claims_drop_recent_and_in_flight_keys_and_name_the_batches_holding_them():
    from earthkeep.ingest.dedupe import first_by_key

    cache = DedupeCache(100, 10, clock=Clock())
    cache.add_many(["old"])
    a, deps = cache.claim(first_by_key([("x", 1), ("old", 2), ("x", 3), ("y", 4)], key=lambda r: r[0]), "A")
    assert a == {"x": ("x", 1), "y": ("y", 4)} and deps == set()  # the first of repeats; "old" was written
    b, deps = cache.claim({"x": "again", "z": "new"}, "B")
    assert b == {"z": "new"} and deps == {"A"}  # "x" is batch A's to write: B must wait for A before acking
    cache.settle(list(a), "A", written=False)  # batch A failed: its keys may be written by whoever gets them next
    c, deps = cache.claim({"x": "retry", "z": "again"}, "C")
    assert c == {"x": "retry"} and deps == {"B"}
    cache.settle(["z"], "B", written=True)
    cache.settle(["x"], "B", written=False)  # a key B does not own stays C's
    assert cache.claim({"x": 0}, "D") == ({}, {"C"})
    cache.settle(["x"], "C", written=True)
    assert "x" in cache and "z" in cache and "y" not in cache
    assert cache.claim({"x": 1, "z": 2, "w": 3}, "E") == ({"w": 3}, set())
