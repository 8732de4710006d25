"""earthkeep: collect, keep and serve environmental data."""

# Native library load order (no side effect beyond loading): the eccodes wheels (eckitlib.libs)
# bundle SQLite 3.26 and their own PROJ. Whichever copy loads first wins process-wide, so once
# eccodes is imported, Python's sqlite3 gets SQLite 3.26 (no RETURNING: the job queue fails) and
# pyproj warns "unable to set PROJ database path" then crashes with a double free. Loading
# sqlite3 and pyproj before anything can import eccodes avoids both. Likewise psycopg's wheel
# bundles libldap, whose exit-time destructor crashes (SIGSEGV at interpreter exit, so every
# command would end with status 139) when eccodes' libraries were loaded before it.
import contextlib as _contextlib
import sqlite3 as _sqlite3  # noqa: F401

with _contextlib.suppress(ImportError):  # pyproj is part of the geo stack; absent, nothing clashes
    import pyproj as _pyproj  # noqa: F401
with _contextlib.suppress(ImportError):
    import psycopg as _psycopg  # noqa: F401

__version__ = "0.1.0"
