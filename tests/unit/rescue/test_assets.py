"""Resources -> assets: kinds, sizes, file names and hostile URLs (pure functions)."""

import pytest

from earthkeep.rescue.assets import classify, declared_size, file_name, plan_resource, refusal

MAX = 16 << 40


@pytest.mark.parametrize(
    ("url", "fmt", "kind"),
    [
        ("https://data.noaa.gov/a.csv", "CSV", "file"),
        ("https://data.noaa.gov/a.nc", "NetCDF", "file"),
        ("https://data.noaa.gov/page.html", None, "landing_page"),
        ("https://data.noaa.gov/about", "HTML", "landing_page"),
        ("https://data.noaa.gov/api/v1/stations?format=json", "JSON", "api"),
        ("https://gis.noaa.gov/arcgis/rest/services/x/MapServer", "Esri REST", "service"),
        ("https://gis.noaa.gov/wms?service=WMS&request=GetCapabilities", None, "service"),
        ("ftp://ftp.noaa.gov/pub/x.csv", "CSV", "service"),
    ],
)
def test_classify(url, fmt, kind):
    assert classify(url, fmt, None) == kind


@pytest.mark.parametrize(
    ("value", "size", "note"),
    [
        (1234, 1234, None),
        ("1234", 1234, None),
        (12.0, 12, None),
        (None, None, None),
        ("", None, None),
        (10**30, None, "implausible"),
        (-5, None, "negative"),
        ("1,234 KB", None, "not a byte count"),
        (True, None, "not a byte count"),
        (MAX + 1, None, "implausible"),
    ],
)
def test_declared_size(value, size, note):
    got, why = declared_size(value, MAX)
    assert got == size
    assert (why is None) if note is None else note in why


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/x.csv",
        "http://192.168.0.10/admin",
        "http://[::1]:6379/",
        "gopher://127.0.0.1:25/",
        "http://localhost/x",
        "http://127.0.0.1:22/",
        "javascript:alert(1)",
        "",
    ],
)
def test_hostile_urls_are_refused(url):
    plan = plan_resource({"id": "r1", "url": url, "format": "CSV"}, max_bytes=MAX, allow_private=False)
    assert plan.refused, url


def test_allow_private_lets_loopback_through_but_never_other_schemes():
    assert refusal("http://127.0.0.1:8080/x.csv", allow_private=True) is None
    assert "only http" in refusal("file:///etc/passwd", allow_private=True)
    assert refusal("https://data.noaa.gov/x.csv", allow_private=False) is None


def test_file_names_are_safe_and_distinct():
    assert file_name("https://h/a/b/../../etc/passwd", "abcdef123", "CSV") == "abcdef12-passwd.csv"
    assert file_name("https://h/dir/", "r2", "NetCDF") == "r2-resource.nc"
    assert "/" not in file_name("https://h/%2F..%2Fx.csv", "r3", None)
    assert file_name("https://h/x.csv", "aaaaaaaa1", None) != file_name("https://h/x.csv", "bbbbbbbb1", None)


def test_plan_keeps_a_declared_sha256_only_when_it_is_one():
    good = plan_resource(
        {"id": "r", "url": "https://h/x", "hash": "sha256:" + "A" * 64}, max_bytes=MAX, allow_private=False
    )
    bad = plan_resource({"id": "r", "url": "https://h/x", "hash": "md5:abc"}, max_bytes=MAX, allow_private=False)
    assert good.sha256 == "a" * 64 and bad.sha256 is None


@pytest.mark.parametrize(
    "url",
    [
        "https://data.noaa.gov/a/b.csv?x=1&y=2#frag",
        "HTTP://Example.COM:8080/Path/",
        "http://h",
        "http://h?",
        "http://h#",
        "https://u:p@h:80/p;x?q=1#f",
        "http://h/a b",
        "http:/x",
        "http:x",
        "http://[::1]:6379/",
        "http://[::1",
        "http://a]b/",
        "http://h\\x/y",
        "https://h?x#y",
        "http://h#a?b",
        "ftp://h/x",
        "http://é.example/",
        " http://h/",
        "http://h/\tx",
        "http://h/x\x00y",
        "",
        "https://h:99999/",
        "//h/x",
        "http:///x",
    ],
)
def test_the_fast_url_split_agrees_with_urlsplit(url):
    from urllib.parse import urlsplit

    from earthkeep.rescue.assets import _split

    try:
        parts = urlsplit(url)
        want = (parts.scheme, parts.netloc, parts.path)
    except ValueError:
        want = ("", "", "")
    assert _split(url) == want


@pytest.mark.parametrize("allow_private", [True, False])
def test_the_per_host_refusal_cache_gives_the_uncached_answer(allow_private):
    urls = [
        "https://data.noaa.gov/a.csv",
        "https://data.noaa.gov/b.csv",
        "http://127.0.0.1:9/x",
        "http://127.0.0.1:9/y",
        "http://10.0.0.1/z",
        "https://h:99999/",
        "http://[::1]/x",
        "http://localhost/a",
        "file:///etc/passwd",
        "gopher://h/x",
        "http://h:abc/",
    ]
    for url in urls * 2:  # the second round answers from the cache
        plan = plan_resource({"id": "r", "url": url}, max_bytes=MAX, allow_private=allow_private)
        assert plan.refused == refusal(url, allow_private), url


def test_a_malformed_url_is_planned_and_refused_not_raised():
    plan = plan_resource({"id": "r", "url": "http://[::1/x.csv", "format": "CSV"}, max_bytes=MAX, allow_private=True)
    assert plan.refused and "malformed" in plan.refused
    assert classify("http://[::1/x", "CSV", None) == "file"


def test_extensions_and_file_names_match_the_standard_library_way():
    """The fast helpers give exactly what posixpath and the plain unquote-then-basename gave."""
    import posixpath
    import random
    from urllib.parse import unquote

    from earthkeep.rescue.assets import SAFE_NAME, _extension, _file_name

    rng = random.Random(3)
    pieces = ["a", "b.c", ".", "..", "/", "%2F", "%2e", "%", "tar.gz", ".hidden", "x y", "é", "%C3%A9", "_", "-"]
    paths = ["", "/", "/a.csv", "/dir.d/file", "/.bashrc", "/a/..", "/a/b.", "/x.tar.gz", "/%2Fetc%2Fpasswd"]
    paths += ["/" + "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))) for _ in range(3000)]
    for path in paths:
        assert _extension(path) == posixpath.splitext(path)[1], path
        base = SAFE_NAME.sub("_", posixpath.basename(unquote(path))).strip("._")[:150]
        expected = base if "." in base else (f"{base}.csv" if base else "resource.csv")
        assert _file_name(path, "abc-123", "CSV") == f"abc-123-{expected}", path
