"""The one error tree of earthkeep.

Every error raised on purpose by earthkeep derives from :class:`EarthkeepError`.
Adapters (database, store, HTTP, broker) translate the errors of their drivers
into these at their boundary (``raise ... from exc``); ``earthkeep.api.errors``
is the only place that maps them to HTTP status codes.

::

    EarthkeepError
    ├── ConfigError          a setting is missing or has a bad value
    ├── InvalidInput         the caller sent something malformed or out of range
    │   ├── UnsafePath       a key or file name tries to escape its root
    │   └── PayloadTooLarge  a request carries more bytes or records than it may
    ├── RateLimited          the caller is over its rate; retry after ``retry_after_s``
    ├── NotFound             the thing asked for does not exist
    ├── Conflict             the thing exists already, or is in the wrong state
    ├── Unauthorized         no valid credential was given
    ├── Forbidden            the credential lacks the needed scope
    ├── SourceUnavailable    a remote provider or our own backend cannot be reached
    │   └── StoreUnavailable the object store cannot be reached
    ├── TransferFailed       a download could not produce the right bytes
    └── IntegrityError       bytes do not match their declared size or checksum
"""

from __future__ import annotations


class EarthkeepError(Exception):
    """Root of every error earthkeep raises on purpose.

    ``retry_after_s``, when set, tells the caller when trying again makes sense
    (the API sends it as ``Retry-After``).
    """

    def __init__(self, *args: object, retry_after_s: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after_s = retry_after_s


class ConfigError(EarthkeepError):
    """A setting is missing or has a value that cannot be used."""


class InvalidInput(EarthkeepError):
    """The caller sent something malformed or out of range."""


class UnsafePath(InvalidInput):
    """A key or file name is absolute, contains ``..``, NUL bytes or similar."""


class PayloadTooLarge(InvalidInput):
    """A request body carries more bytes or records than the endpoint takes."""


class RateLimited(EarthkeepError):
    """The caller sent more than its rate allows."""


class NotFound(EarthkeepError):
    """The requested object, item, job or key does not exist."""


class Conflict(EarthkeepError):
    """The object exists already or is in a state that forbids the operation."""


class Unauthorized(EarthkeepError):
    """No valid API key was presented."""


class Forbidden(EarthkeepError):
    """The API key is valid but lacks the scope the operation needs."""


class SourceUnavailable(EarthkeepError):
    """A remote provider or a backend did not answer usefully; retry later."""


class StoreUnavailable(SourceUnavailable):
    """The object store could not be reached."""


class TransferFailed(EarthkeepError):
    """A download failed after its retries were exhausted."""


class IntegrityError(EarthkeepError):
    """Bytes did not match the declared size or checksum."""
