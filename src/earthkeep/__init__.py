"""earthkeep: collect, keep and serve environmental data."""

# Native library load order (no side effect beyond loading): the eccodes wheels (eckitlib.libs)
# bundle SQLite 3.26 and their own PROJ. Whichever copy loads first wins process-wide, so once
# eccodes is imported, Python's sqlite3 gets SQLite 3.26 (no RETURNING: the job queue fails) and
# pyproj warns "unable to set PROJ database path" then crashes with a double free. Loading
# sqlite3 and pyproj before anything can import eccodes avoids both. Likewise psycopg's wheel
# bundles libldap, whose exit-time destructor crashes (SIGSEGV at interpreter exit, so every
# command would end with status 139) when eccodes' libraries were loaded before it.
#
# sqlite3 is cheap and loads now. pyproj and psycopg cost about 0.15 s together, which every
# command line run would pay without needing them, so they load just before the first import of
# an eccodes package instead: the finder below is asked first about every import and, on the
# first one of those packages, takes itself out, loads pyproj and psycopg and lets the import go on.
import contextlib as _contextlib
import sqlite3 as _sqlite3  # noqa: F401
import sys as _sys

_ECCODES_PACKAGES = frozenset({"eccodes", "gribapi", "eccodeslib", "eckitlib", "cfgrib"})


def _load_before_eccodes() -> None:
    """Load the libraries that must not come after eccodes' (absent ones clash with nothing)."""
    with _contextlib.suppress(ImportError):  # pyproj is part of the geo stack
        import pyproj  # noqa: F401
    with _contextlib.suppress(ImportError):
        import psycopg  # noqa: F401


class _BeforeEccodes:
    """A ``sys.meta_path`` finder that finds nothing: it runs :func:`_load_before_eccodes` once."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in _ECCODES_PACKAGES:
            with _contextlib.suppress(ValueError):  # another thread took it out already
                _sys.meta_path.remove(self)
            _load_before_eccodes()


if not _ECCODES_PACKAGES.intersection(_sys.modules):  # eccodes already loaded: too late to help
    _sys.meta_path.insert(0, _BeforeEccodes())
else:
    _load_before_eccodes()

__version__ = "0.1.0"
