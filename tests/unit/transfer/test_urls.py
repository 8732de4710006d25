"""The guard on user-supplied URLs, and the retry timing rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from earthkeep.errors import InvalidInput
from earthkeep.transfer.http import RetryPolicy, parse_retry_after
from earthkeep.transfer.urls import check_url, check_url_async, non_public_reason


def public(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


@pytest.mark.parametrize(
    "url",
    ["ftp://example.org/x", "file:///etc/passwd", "gopher://h/", "javascript:alert(1)", "//example.org/x", "x"],
)
def test_refuses_other_schemes(url):
    with pytest.raises(InvalidInput, match="http"):
        check_url(url, allow_private=True, resolve=public)


def test_refuses_missing_host_and_bad_port():
    with pytest.raises(InvalidInput, match="no host"):
        check_url("http:///path", allow_private=False, resolve=public)
    with pytest.raises(InvalidInput, match="malformed"):
        check_url("http://example.org:99999/", allow_private=False, resolve=public)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.8.9.10:8080/x", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd00::1]/", "private"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://100.64.0.1/", "non-global"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://localhost:8000/", "loopback"),
    ],
)
def test_refuses_non_public_addresses(url, reason):
    with pytest.raises(InvalidInput, match=reason) as info:
        check_url(url, allow_private=False)
    assert "EARTHKEEP_ALLOW_PRIVATE_URLS" in str(info.value)


def test_name_resolving_to_private_is_refused():
    with pytest.raises(InvalidInput, match=r"10\.0\.0\.7"):
        check_url("https://intranet.example/x", allow_private=False, resolve=lambda h, p: ["10.0.0.7"])
    mixed = ["93.184.216.34", "127.0.0.1"]
    with pytest.raises(InvalidInput, match="loopback"):
        check_url("https://sneaky.example/x", allow_private=False, resolve=lambda h, p: mixed)


def test_public_and_allowed_urls_pass():
    assert check_url("https://example.org/a?b=c", allow_private=False, resolve=public) == "https://example.org/a?b=c"
    assert check_url("http://127.0.0.1:9/x", allow_private=True) == "http://127.0.0.1:9/x"
    assert check_url("http://8.8.8.8/x", allow_private=False) == "http://8.8.8.8/x"


def test_resolver_gets_default_port():
    seen = []
    check_url("https://example.org/x", allow_private=False, resolve=lambda h, p: seen.append((h, p)) or ["1.1.1.1"])
    check_url("http://example.org:8080/x", allow_private=False, resolve=lambda h, p: seen.append((h, p)) or ["1.1.1.1"])
    assert seen == [("example.org", 443), ("example.org", 8080)]


async def test_async_variant_checks_literals_and_localhost():
    with pytest.raises(InvalidInput, match="loopback"):
        await check_url_async("http://localhost:1/x", allow_private=False)
    with pytest.raises(InvalidInput, match="private"):
        await check_url_async("http://192.168.0.1/x", allow_private=False)
    assert await check_url_async("http://1.1.1.1/x", allow_private=False) == "http://1.1.1.1/x"
    assert await check_url_async("http://127.0.0.1/x", allow_private=True) == "http://127.0.0.1/x"


def test_non_public_reason_public():
    assert non_public_reason("93.184.216.34") is None
    assert non_public_reason("2606:4700::1111") is None


# ------------------------------------------------------------------ retry timing


def test_parse_retry_after():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None


def test_retry_policy_backoff_and_cap():
    policy = RetryPolicy(base_s=1.0, max_s=8.0, jitter=0.5, retry_after_cap_s=60.0)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delay = policy.delay(attempt)
        assert cap * 0.5 <= delay <= cap
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert policy.delay(1, retry_after=3600.0) == 60.0
    assert RetryPolicy(jitter=0.0, base_s=0.5).delay(3) == 2.0
