"""The hostile inputs corpus: generated, so no 100 MB or broken file sits in the repository.

Each entry is something an attacker, a broken client or a lying server sends. ``tests/integration/
test_hostile_inputs.py`` sends every one and expects a clear 4xx (or a recorded failure) and nothing stored.
"""

from __future__ import annotations

import functools
import json
import struct

# URLs that must never be fetched on a user's behalf (SSRF): loopback, link-local (cloud metadata),
# private and shared ranges, IPv6 forms, the legacy IPv4 spellings getaddrinfo accepts, other schemes.
SSRF_URLS = [
    "http://127.0.0.1/x", "http://localhost:8000/x", "http://app.localhost/x", "http://127.1/x",
    "http://2130706433/x", "http://0x7f000001/x", "http://0177.0.0.1/x", "http://[::1]/x",
    "http://[::ffff:127.0.0.1]/x", "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/x",
    "http://10.0.0.1/x", "http://172.16.0.1/x", "http://192.168.1.1/x", "http://100.64.0.1/x",
    "http://0.0.0.0/x", "http://[::]/x", "http://user:secret@127.0.0.1/x", "https://127.0.0.1:443/x",
    "file:///etc/passwd", "gopher://127.0.0.1:25/x", "ftp://example.org/x", "//example.org/x", "http:///x",
    "http://exa mple.org/x", "http://example.org:99999/x",
]

# names and keys that try to leave their directory or break a path: refused wherever a key is built
TRAVERSAL = ["../../etc/passwd", "..", "a/../../b", "/etc/passwd", "..\\..\\windows\\win.ini", "a\x00b",
             "....//....//etc/..", "a/./../../b"]
# odd but harmless as keys (kept literally, nothing decodes them): they must never reach outside either
ODD_NAMES = ["%2e%2e%2fetc%2fpasswd", "~root/.ssh/id_rsa", "..%2f..%2f", "%00"]

NUL = "A\x00B"
HUGE_BODY_BYTES = 100 * 2**20


def deep_json(depth: int) -> bytes:
    """``[[[[...]]]]`` nested ``depth`` times: a parser-recursion bomb."""
    return b"[" * depth + b"]" * depth


@functools.cache
def geojson_cases() -> dict[str, bytes]:
    """Area bodies that must be refused with a 4xx (never stored)."""
    ring = [[36.5, -1.5], [37, -1.5], [37, -1], [36.5, -1], [36.5, -1.5]]
    poly = {"type": "Polygon", "coordinates": [ring]}
    return {
        "not json": b"{not json",
        "empty": b"",
        "nan coordinates": b'{"type": "Polygon", "coordinates": [[[NaN, 0], [1, 0], [1, 1], [NaN, 0]]]}',
        "infinite coordinates": b'{"type": "Polygon", "coordinates": [[[Infinity, 0], [1, 0], [1, 1], [0, 0]]]}',
        "out of range": json.dumps({"type": "Polygon",
                                    "coordinates": [[[500, 0], [501, 0], [501, 1], [500, 0]]]}).encode(),
        "self-intersecting": json.dumps({"type": "Polygon",
                                         "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}).encode(),
        "wrong type": json.dumps({"type": "Point", "coordinates": [36.5, -1.5]}).encode(),
        "strings for numbers": json.dumps({"type": "Polygon", "coordinates": [[["a", "b"]] * 4]}).encode(),
        "nested 100k deep": deep_json(100_000),
        "nul in name": json.dumps({"type": "Feature", "properties": {"name": NUL}, "geometry": poly}).encode(),
        "a million vertices": json.dumps({"type": "Polygon", "coordinates": [
            [[36 + i * 1e-6, -1.0] for i in range(1_000_000)] + [[36, -1.0]]]}).encode(),
    }


def corrupt_geotiff() -> bytes:
    """A TIFF header that promises a first IFD past the end of the file."""
    return b"II*\x00" + struct.pack("<I", 10**9) + bytes(4096)


def html_as_geotiff() -> bytes:
    return b"<html><body>502 Bad Gateway</body></html>" + bytes(2048)
