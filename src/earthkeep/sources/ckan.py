"""CKAN portals: list datasets fast and completely with ``ckanapi``, without deep offsets.

Deep ``start`` offsets make Solr collect ``start + rows`` documents per page
and time out on large portals (catalog.data.gov holds 300,000+ datasets).
Instead every listing here pages **moving ``metadata_modified`` windows**:
``fq=metadata_modified:[cursor TO end}``, ``sort=metadata_modified asc``,
``rows=1000``; the next page starts at the last timestamp seen (records sharing
that timestamp are skipped with a small ``start``). The span between the oldest
and newest match is cut into windows paged by ``concurrency`` threads at once;
a thread that runs out of windows splits the one with the most records left
(from the ``count`` of its last answer) in two, where the density of that last
page puts half of them (work stealing), so skewed portals stay parallel and no
request is spent on empty slices. Records are de-duplicated by
id; the last window is open-ended, so datasets modified during a listing are
still seen.

Portals are declared as data below; errors of ``ckanapi``/``requests`` become
:class:`~earthkeep.errors.SourceUnavailable` (portal down, malformed answer,
retried first), :class:`~earthkeep.errors.InvalidInput` (the portal refused
our query) or :class:`~earthkeep.errors.NotFound`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import structlog
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from earthkeep import __version__
from earthkeep.errors import InvalidInput, NotFound, SourceUnavailable

log = structlog.get_logger(__name__)

# --------------------------------------------------------------- providers as data


@dataclass(frozen=True)
class Portal:
    """A CKAN portal and the limits of its search API."""

    url: str
    rows_max: int = 1000
    time_field: str = "metadata_modified"
    politeness: int = 8  # most requests in flight we send by default


PORTALS: dict[str, Portal] = {
    "data.gov": Portal("https://catalog.data.gov"),
    "data.gov.uk": Portal("https://data.gov.uk", politeness=4),
    "open.canada.ca": Portal("https://open.canada.ca/data", politeness=4),
    "data.europa.eu": Portal("https://data.europa.eu/data", politeness=4),
}
DEFAULT_PORTAL = PORTALS["data.gov"].url
SEARCH_ACTION = "package_search"
SORT_ASC = "metadata_modified asc"
SORT_DESC = "metadata_modified desc"
SWEEP_FIELDS = "id,name,metadata_modified"
USER_AGENT = f"earthkeep/{__version__} (data rescue; +https://github.com/earthkeep)"
TRANSIENT_ATTEMPTS = 4


# ----------------------------------------------------------------------- filters


@dataclass(frozen=True)
class Filters:
    """Which datasets to list: organizations, groups, tags (any of each) and a Solr ``q``."""

    organizations: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    query: str = "*:*"

    def fq(self) -> str:
        """The Solr filter for these choices (``organization:(a OR b) AND tags:(c)``)."""
        terms = []
        for name, values in (("organization", self.organizations), ("groups", self.groups), ("tags", self.tags)):
            if values:
                terms.append(f"{name}:(" + " OR ".join(_quote(v) for v in values) + ")")
        return " AND ".join(terms)

    def key(self) -> str:
        """A stable identifier of this scope (the high-water mark is kept per portal and scope)."""
        import hashlib

        text = "|".join(
            [
                ",".join(sorted(self.organizations)),
                ",".join(sorted(self.groups)),
                ",".join(sorted(self.tags)),
                self.query,
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def as_dict(self) -> dict[str, Any]:
        return {
            "organizations": list(self.organizations),
            "groups": list(self.groups),
            "tags": list(self.tags),
            "query": self.query,
        }

    def matches(self, organization: str | None, groups: Sequence[str], tags: Sequence[str]) -> bool:
        """Whether a stored dataset falls inside this scope (used before marking it gone)."""
        return (
            (not self.organizations or organization in self.organizations)
            and (not self.groups or bool(set(groups) & set(self.groups)))
            and (not self.tags or bool(set(tags) & set(self.tags)))
            and self.query in ("", "*:*")
        )


def _quote(value: str) -> str:
    if not value or any(c in value for c in ' ():"[]{}'):
        return '"' + value.replace('"', "") + '"'
    return value


# ------------------------------------------------------------------- timestamps


def parse_modified(value: Any) -> datetime:
    """A CKAN ``metadata_modified`` (naive UTC ISO) as an aware datetime; :class:`InvalidInput` if not one."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"metadata_modified {value!r} is not a timestamp")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"metadata_modified {value!r} is not an ISO timestamp") from exc
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def solr_key(ts: datetime) -> str:
    """Millisecond Solr date (what CKAN's index stores): ``2024-05-18T21:38:23.184Z``."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


# ----------------------------------------------------------------------- client


class CkanClient:
    """``ckanapi.RemoteCKAN`` per thread, with retries and error translation."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 120.0,
        session_factory: Callable[[], Any] | None = None,
        apikey: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._session_factory = session_factory
        self._apikey = apikey
        self._lock = threading.Lock()
        self._remotes: list[Any] = []
        self.requests = 0

    def _remote(self) -> Any:
        remote = getattr(self._local, "remote", None)
        if remote is None:
            import requests

            session = self._session_factory() if self._session_factory else requests.Session()
            remote = _remote_ckan_class()(self.url, apikey=self._apikey, user_agent=USER_AGENT, session=session)
            self._local.remote = remote
            with self._lock:
                self._remotes.append(remote)
        return remote

    def close(self) -> None:
        """Close every thread's HTTP session."""
        with self._lock:
            for remote in self._remotes:
                remote.close()
            self._remotes.clear()

    @retry(
        retry=retry_if_exception_type(SourceUnavailable),
        stop=stop_after_attempt(TRANSIENT_ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=10),
        reraise=True,
    )
    def call(self, action: str, **params: Any) -> Any:
        """Call one action; transient failures are retried, then raised as :class:`SourceUnavailable`."""
        import ckanapi.errors as ce
        import requests

        with self._lock:
            self.requests += 1
        try:
            return self._remote().call_action(action, params, requests_kwargs={"timeout": self.timeout_s})
        except ce.NotFound as exc:
            raise NotFound(f"{self.url}: {action}: not found ({exc})") from exc
        except (ce.SearchQueryError, ce.ValidationError, ce.SearchError) as exc:
            raise InvalidInput(f"{self.url}: {action} refused the query: {exc}") from exc
        except ce.NotAuthorized as exc:
            raise SourceUnavailable(f"{self.url}: {action}: not authorized ({exc})") from exc
        except (ce.CKANAPIError, ce.ServerIncompatibleError) as exc:
            raise SourceUnavailable(f"{self.url}: {action} did not answer like a CKAN API: {str(exc)[:300]}") from exc
        except requests.RequestException as exc:
            raise SourceUnavailable(f"{self.url}: {action} failed: {exc}") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # a body ckanapi could not use
            raise SourceUnavailable(
                f"{self.url}: {action} answered malformed JSON ({type(exc).__name__}: {exc})"
            ) from exc

    def search(
        self, fq: str, *, q: str = "*:*", rows: int = 1000, start: int = 0, sort: str = SORT_ASC, fl: str | None = None
    ) -> tuple[int, list[Any]]:
        """One ``package_search`` page: the total count and the raw results (shape checked)."""
        params: dict[str, Any] = {"q": q, "fq": fq, "rows": rows, "start": start, "sort": sort}
        if fl:
            params["fl"] = fl
        result = self.call(SEARCH_ACTION, **params)
        if not isinstance(result, dict) or not isinstance(result.get("results"), list):
            raise SourceUnavailable(
                f"{self.url}: malformed package_search answer: no results list "
                f"(got {type(result).__name__}: {str(result)[:200]})"
            )
        count = result.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise SourceUnavailable(f"{self.url}: malformed package_search answer: count is {count!r}")
        return count, result["results"]


@lru_cache(maxsize=1)
def _remote_ckan_class() -> type:
    """``ckanapi.RemoteCKAN`` reading a successful answer with orjson.

    A ``package_search`` page of 1,000 datasets is about 3 MB of JSON; the
    standard library's parser, which ``ckanapi`` uses, took a tenth of a
    discovery run's CPU. Requests are built by ``ckanapi.common.prepare_action``
    as ``RemoteCKAN`` builds them, and anything but a successful answer (errors,
    bodies that are not JSON) goes to ``ckanapi``'s own
    ``reverse_apicontroller_action``, so its exceptions are unchanged.
    """
    import orjson
    from ckanapi import RemoteCKAN
    from ckanapi.common import prepare_action, reverse_apicontroller_action

    class FastRemoteCKAN(RemoteCKAN):  # type: ignore[misc]
        def call_action(self, action: str, data_dict: Any = None, context: Any = None, apikey: Any = None,
                        files: Any = None, requests_kwargs: dict[str, Any] | None = None) -> Any:
            if context or files or self.get_only:
                return super().call_action(action, data_dict, context, apikey, files, requests_kwargs)
            path, data, headers = prepare_action(action, data_dict, apikey or self.apikey, None,
                                                 base_url=self.base_url)
            headers["User-Agent"] = self.user_agent
            url = self.address.rstrip("/") + "/" + path
            response = self.session.post(url, data=data, headers=headers, allow_redirects=False,
                                         **{"timeout": 120, **(requests_kwargs or {})})
            try:
                parsed = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict) and parsed.get("success"):
                return parsed["result"]
            return reverse_apicontroller_action(url, response.status_code, response.text)

    return FastRemoteCKAN


# ---------------------------------------------------------------------- listing


@dataclass
class Window:
    """A slice ``[cursor, hi)`` of the time axis being paged (``hi=None``: open-ended)."""

    cursor: str
    hi: str | None
    skip: int = 0
    busy: bool = False
    done: bool = False
    pages: int = 0
    left: int | None = None  # records after the last page, by its answer's count (None: not known)
    rate: float | None = None  # records per second of metadata_modified in the last page


@dataclass
class ListingStats:
    """What one listing did."""

    requests: int = 0
    records: int = 0
    duplicates: int = 0
    invalid: int = 0
    first_invalid: str | None = None
    reported: int = 0
    windows: int = 0
    high_water: datetime | None = None
    elapsed_s: float = 0.0


@dataclass
class Lister:
    """Lists every dataset matching ``fq`` (optionally modified since ``since``) in parallel windows."""

    client: CkanClient
    fq: str = ""
    q: str = "*:*"
    rows: int = 1000
    concurrency: int = 8
    fl: str | None = None
    since: datetime | None = None
    stats: ListingStats = field(default_factory=ListingStats)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._windows: list[Window] = []
        self._stop = threading.Event()

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of new, valid records as they arrive (the caller may write them meanwhile)."""
        started = time.monotonic()
        out: queue.Queue[Any] = queue.Queue(maxsize=4 * self.concurrency)
        if not self._plan():
            self.stats.elapsed_s = time.monotonic() - started
            return
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="ckan")
        futures = [pool.submit(self._work, out) for _ in range(self.concurrency)]
        try:
            yield from self._drain(out, len(futures))
        finally:
            self._stop.set()
            _empty(out)
            pool.shutdown(wait=True, cancel_futures=True)
            self.stats.elapsed_s = time.monotonic() - started
        for f in futures:
            f.result()

    def _drain(self, out: queue.Queue[Any], workers: int) -> Iterator[list[dict[str, Any]]]:
        finished = 0
        while finished < workers:
            item = out.get()
            if item is None:
                finished += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item

    def _range_fq(self, lo: str, hi: str | None) -> str:
        rng = f"metadata_modified:[{lo} TO {hi + '}' if hi else '*]'}"
        return f"{self.fq} AND {rng}" if self.fq else rng

    def _plan(self) -> bool:
        """Find the oldest and newest match and cut the span into windows; False when nothing matches."""
        lo = solr_key(self.since) if self.since else "*"
        count, first = self.client.search(self._range_fq(lo, None), q=self.q, rows=1, sort=SORT_ASC, fl=self.fl)
        self.stats.requests += 1
        self.stats.reported = count
        if count == 0 or not first:
            return False
        if count <= self.rows:
            self._windows = [Window(lo, None)]
        else:
            _, last = self.client.search(
                self._range_fq(lo, None), q=self.q, rows=1, sort=SORT_DESC, fl="id,metadata_modified"
            )
            self.stats.requests += 1
            self._windows = _split(self._bound(first), self._bound(last), min(self.concurrency, -(-count // self.rows)))
        self.stats.windows = len(self._windows)
        return True

    def _bound(self, records: list[Any]) -> str:
        """The time key of the first record of a one-row answer; a malformed one is a source error."""
        try:
            return solr_key(_check_record(records[0] if records else None)[0])
        except InvalidInput as exc:
            raise SourceUnavailable(f"{self.client.url}: malformed package_search answer: {exc}") from exc

    def _work(self, out: queue.Queue[Any]) -> None:
        try:
            while not self._stop.is_set():
                window = self._take()
                if window is None:
                    break
                while not window.done and not self._stop.is_set():
                    self._page(window, out)
        except BaseException as exc:
            self._stop.set()
            out.put(exc)
        finally:
            out.put(None)

    def _take(self) -> Window | None:
        """A window to page: a free one, else half of the busiest; None when all is done."""
        while not self._stop.is_set():
            with self._lock:
                free = [w for w in self._windows if not w.busy and not w.done]
                if free:
                    free[0].busy = True
                    return free[0]
                stolen = self._steal()
                if stolen is not None:
                    return stolen
                if all(w.done for w in self._windows):
                    return None
            time.sleep(0.005)
        return None

    def _steal(self) -> Window | None:
        """Split the busy window with the most records left (if worth a request of its own) in two."""
        best: tuple[int, Window, str] | None = None
        for w in self._windows:
            if w.busy and not w.done and w.left is not None and w.left > self.rows // 4:
                cut = _cut(w)
                if cut is not None and (best is None or w.left > best[0]):
                    best = (w.left, w, cut)
        if best is None:
            return None
        _, w, cut = best
        new = Window(cut, w.hi, busy=True)
        w.hi, w.left = cut, None  # known again after its next page
        self._windows.append(new)
        self.stats.windows += 1
        return new

    def _page(self, w: Window, out: queue.Queue[Any]) -> None:
        with self._lock:
            cursor, hi, skip = w.cursor, w.hi, w.skip
        count, results = self.client.search(
            self._range_fq(cursor, hi), q=self.q, rows=self.rows, start=skip, sort=SORT_ASC, fl=self.fl
        )
        fresh, keys = self._accept(results)
        with self._lock:
            self.stats.requests += 1
            w.pages += 1
            if keys:
                last = keys[-1]
                w.skip = (w.skip + len(keys)) if last == w.cursor else sum(1 for k in keys if k == last)
                w.cursor = last
            # count covers [cursor, hi) as asked: unknown if the window was split meanwhile
            w.left = max(0, count - skip - len(results)) if w.hi == hi else None
            w.rate = _rate(keys)
            if len(results) < self.rows or (w.hi is not None and w.cursor >= w.hi):
                w.done, w.busy = True, False
        if fresh:
            out.put(fresh)

    def _accept(self, results: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
        """Valid, not yet seen records of a page, and the time keys of every valid one (in order)."""
        checked: list[tuple[dict[str, Any], str, datetime]] = []
        invalid: list[str] = []
        for rec in results:
            try:
                ts, rid = _check_record(rec)
            except InvalidInput as exc:
                invalid.append(str(exc))
                continue
            checked.append((rec, rid, ts))
        fresh = []
        with self._lock:  # once per page
            st = self.stats
            if invalid:
                st.invalid += len(invalid)
                st.first_invalid = st.first_invalid or invalid[0]
            for rec, rid, ts in checked:
                if rid in self._seen:
                    st.duplicates += 1
                    continue
                self._seen.add(rid)
                st.records += 1
                if st.high_water is None or ts > st.high_water:
                    st.high_water = ts
                fresh.append(rec)
        return fresh, [solr_key(ts) for _, _, ts in checked]


def _check_record(rec: Any) -> tuple[datetime, str]:
    """``(metadata_modified, id)`` of a search result, or :class:`InvalidInput`."""
    if not isinstance(rec, dict):
        raise InvalidInput(f"a search result is a {type(rec).__name__}, not a dataset object: {str(rec)[:80]!r}")
    rid = rec.get("id")
    if not isinstance(rid, str) or not rid or len(rid) > 100:
        raise InvalidInput(f"a search result has no usable id: {str(rec)[:120]!r}")
    return parse_modified(rec.get("metadata_modified")), rid


def _split(lo: str, hi: str | None, n: int) -> list[Window]:
    """``n`` windows of equal time from ``lo`` to ``hi``; the last one is open-ended."""
    if hi is None or n <= 1 or hi <= lo:
        return [Window(lo, None)]
    a, b = parse_modified(lo), parse_modified(hi)
    step = (b - a) / n
    cuts = [lo] + [solr_key(a + step * i) for i in range(1, n)]
    cuts = sorted(set(cuts))
    return [Window(c, cuts[i + 1] if i + 1 < len(cuts) else None) for i, c in enumerate(cuts)]


def _rate(keys: list[str]) -> float | None:
    """Records per second of ``metadata_modified`` over a page's keys; None for a single instant."""
    if len(keys) < 2 or keys[0] == keys[-1]:
        return None
    return len(keys) / (parse_modified(keys[-1]) - parse_modified(keys[0])).total_seconds()


def _cut(w: Window) -> str | None:
    """Where to split ``w``: half its records on, at its last page's density (else half its time)."""
    mid = _midpoint(w.cursor, w.hi)
    if mid is None or not w.rate or not w.left:
        return mid
    cut = solr_key(parse_modified(w.cursor) + timedelta(seconds=w.left / 2 / w.rate))
    return cut if w.cursor < cut < (w.hi or mid) else mid


def _midpoint(lo: str, hi: str | None) -> str | None:
    """Half-way between ``lo`` and ``hi`` (an open end counts as now); None if under a millisecond apart."""
    a = parse_modified(lo)
    b = parse_modified(hi) if hi else datetime.now(UTC)
    if b - a < timedelta(milliseconds=2):
        return None
    return solr_key(a + (b - a) / 2)


def _empty(q: queue.Queue[Any]) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def organizations(client: CkanClient, page: int = 100) -> list[dict[str, Any]]:
    """Every organization of the portal with ``all_fields`` (paged with ``limit``/``offset``)."""
    out: list[dict[str, Any]] = []
    while True:
        batch = client.call("organization_list", all_fields=True, limit=page, offset=len(out))
        if not isinstance(batch, list):
            raise SourceUnavailable(f"{client.url}: malformed organization_list answer: {str(batch)[:200]}")
        out.extend(o for o in batch if isinstance(o, dict) and isinstance(o.get("id"), str))
        if len(batch) < page:
            return out
