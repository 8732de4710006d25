"""Token buckets per API key."""

from earthkeep.ingest.ratelimit import RateLimiter


def test_burst_then_wait_then_refill():
    now = [0.0]
    rl = RateLimiter(10, 20, clock=lambda: now[0])
    assert rl.take("k", 20) == 0
    assert rl.take("k", 5) == 0.5
    assert rl.take("other", 20) == 0
    now[0] = 0.5
    assert rl.take("k", 5) == 0


def test_a_batch_bigger_than_the_burst_costs_the_burst():
    rl = RateLimiter(10, 20, clock=lambda: 0.0)
    assert rl.take("k", 1000) == 0 and rl.take("k", 1) > 0


def test_zero_rate_disables():
    assert RateLimiter(0, 1).take("k", 10**9) == 0
