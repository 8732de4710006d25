"""Object keys: validation and the layout shared by every domain."""

from __future__ import annotations

import posixpath
import re

from earthkeep.errors import UnsafePath

_MAX_KEY = 1024
_BAD_SEGMENT = re.compile(r"^\.{1,2}$")


def safe_key(key: str) -> str:
    """Return ``key`` normalised, or raise :class:`UnsafePath`.

    A key is relative, uses ``/`` separators, has no empty, ``.`` or ``..``
    segment, no backslash, no NUL or other control character, and is at most
    1024 characters long. Such a key can never resolve outside the store root.
    """
    if not isinstance(key, str) or not key:
        raise UnsafePath("object key must be a non-empty string")
    if len(key) > _MAX_KEY:
        raise UnsafePath(f"object key longer than {_MAX_KEY} characters")
    if any(ord(c) < 32 or c == "\x7f" for c in key):
        raise UnsafePath(f"object key {key!r} contains a control character")
    if "\\" in key:
        raise UnsafePath(f"object key {key!r} contains a backslash; use '/'")
    if key.startswith("/"):
        raise UnsafePath(f"object key {key!r} is absolute; keys are relative to the store root")
    parts = key.split("/")
    for part in parts:
        if not part or _BAD_SEGMENT.match(part):
            raise UnsafePath(f"object key {key!r} has an empty, '.' or '..' segment")
    return posixpath.join(*parts)


def safe_prefix(prefix: str) -> str:
    """Like :func:`safe_key` but allows the empty prefix and a trailing ``/``."""
    if prefix == "":
        return ""
    trailing = prefix.endswith("/")
    key = safe_key(prefix.rstrip("/") if trailing else prefix)
    return key + "/" if trailing else key
