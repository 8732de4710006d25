"""Object keys: what ``safe_key`` and ``safe_prefix`` accept, and how they say what is wrong."""

from __future__ import annotations

import pytest

from earthkeep.errors import InvalidInput, UnsafePath
from earthkeep.store import safe_key
from earthkeep.store.keys import safe_prefix


@pytest.mark.parametrize("key", [
    "a", "a/b.bin", "forcing/gfs/gfs.20240101/06/gfs.t06z.pgrb2.0p25.f003.grib2", "...", "..a/a..b/.hidden",
    "ünïcode/βeta", "with space/and,comma;", "x" * 1024,
])
def test_safe_keys_come_back_unchanged(key):
    assert safe_key(key) == key


@pytest.mark.parametrize(("key", "reason"), [
    ("../etc/passwd", "has an empty, '.' or '..' segment"),
    ("a/../../b", "has an empty, '.' or '..' segment"),
    ("a/..", "has an empty, '.' or '..' segment"),
    ("./a", "has an empty, '.' or '..' segment"),
    ("a//b", "has an empty, '.' or '..' segment"),
    ("a/", "has an empty, '.' or '..' segment"),
    ("/etc/passwd", "is absolute; keys are relative to the store root"),
    ("//host/share", "is absolute"),
    ("a\\b", "contains a backslash; use '/'"),
    ("..\\..\\windows", "contains a backslash"),
    ("a\x00b", "contains a control character"),
    ("a\nb", "contains a control character"),
    ("a\x7fb", "contains a control character"),
    ("", "must be a non-empty string"),
    ("x" * 1025, "longer than 1024 characters"),
])
def test_unsafe_keys_are_refused_saying_why(key, reason):
    with pytest.raises(UnsafePath) as err:
        safe_key(key)
    assert reason in str(err.value)


@pytest.mark.parametrize("key", [None, b"a/b", 3, ["a"]])
def test_a_key_must_be_a_string(key):
    with pytest.raises(UnsafePath, match="non-empty string"):
        safe_key(key)


def test_an_unsafe_path_is_invalid_input():
    assert issubclass(UnsafePath, InvalidInput)  # the API answers 400 for it, like any bad input


@pytest.mark.parametrize(("prefix", "expected"), [
    ("", ""), ("a", "a"), ("a/", "a/"), ("a/b/", "a/b/"),
    ("a//", "a/"),  # repeated trailing slashes fold into one
])
def test_prefixes_may_be_empty_or_end_with_a_slash(prefix, expected):
    assert safe_prefix(prefix) == expected


@pytest.mark.parametrize("prefix", ["/", "/a/", "../", "a//b/", "a\\", "a/\x00/"])
def test_unsafe_prefixes_are_refused(prefix):
    with pytest.raises(UnsafePath):
        safe_prefix(prefix)
