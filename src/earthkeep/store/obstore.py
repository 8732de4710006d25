"""``ObstoreStore``: the :class:`~earthkeep.store.base.Store` port over ``obstore``.

One class serves a local directory (``obstore.store.LocalStore``) and any
S3-compatible server (``obstore.store.S3Store``: SeaweedFS, MinIO, AWS).

How atomicity is obtained (checked against obstore 0.12):

* local: every write goes to a staging file ``<key>#<n>`` in the target
  directory and is moved onto ``<key>`` when complete (``create`` mode fails
  with EEXIST when the key exists). ``list`` hides ``#<n>`` files, obstore
  refuses such names, and a writer left by an exception deletes its staging
  file (an empty directory may stay). Keys with a segment ending in
  ``#<digits>`` are therefore refused on both backends.
* S3: data up to :data:`PART_SIZE` goes in one ``PUT``; larger data goes in a
  multipart upload that becomes visible only at ``CompleteMultipartUpload`` and
  is aborted when the data source raises.

The sha256 is computed while the bytes are written and returned. It is also
recorded where the backend allows: as S3 user metadata (``x-amz-meta-sha256``,
known up front for ``bytes``, files, streams up to :data:`PART_SIZE` and when
the caller passes ``sha256=``) and as
the extended attribute ``user.earthkeep.sha256`` on local files; ``head``
returns it, or ``None`` when it was not recorded.

``overwrite=False`` is atomic for single ``PUT``s; for multipart uploads it is
checked just before the upload starts (object stores offer no create-only
multipart completion through obstore).

Errors are translated here, once: missing object -> ``NotFound``, precondition
failure -> ``Conflict``, unreachable or failing backend -> ``StoreUnavailable``.
Building a store never contacts the server; an S3 bucket is created lazily,
once, before the first write (:meth:`ObstoreStore.ensure_bucket`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import quote, urlsplit

import httpx
import obstore as obs
import structlog
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import LocalStore, S3Store

from earthkeep.config import StoreSettings
from earthkeep.errors import Conflict, IntegrityError, InvalidInput, NotFound, StoreUnavailable, UnsafePath
from earthkeep.store.base import ObjectInfo
from earthkeep.store.keys import safe_key, safe_prefix

log = structlog.get_logger(__name__)

PART_SIZE = 8 * 1024 * 1024
"""Size of one multipart part; data up to this size is written with one PUT."""
_PLACE_ATTEMPTS = 5  # renames into a directory that a concurrent delete keeps removing (see ObstoreStore._place)
FILE_CHUNK = 1024 * 1024
"""Bytes read from a local file at a time by ``put_file``."""
MAX_CONCURRENCY = 6
"""Parts uploaded at once (memory in flight is about ``PART_SIZE * (MAX_CONCURRENCY + 1)``)."""
SHA256_ATTRIBUTE = "sha256"
SHA256_XATTR = "user.earthkeep.sha256"

_STAGING = re.compile(r"#\d+$")
_REASONS = (
    ("ConnectionRefused", "connection refused"),
    ("dns error", "the host name does not resolve"),
    ("TimedOut", "timed out"),
    ("kind: Timeout", "timed out"),
    ("tcp connect error", "the TCP connection failed"),
    ("error sending request", "the request could not be sent"),
)


@dataclass(frozen=True)
class _S3Target:
    endpoint: str
    bucket: str
    region: str
    access_key: str | None
    secret_key: str | None
    timeout_s: float


class ObstoreStore:
    """An object store on a local directory or an S3-compatible server."""

    def __init__(
        self, inner: LocalStore | S3Store, *, url: str, root: Path | None = None, s3: _S3Target | None = None
    ) -> None:
        self._inner = inner
        self.url = url
        self._root = root
        self._s3 = s3
        self._bucket_ready = s3 is None

    @classmethod
    def local(cls, root: Path) -> ObstoreStore:
        """A store in the directory ``root`` (created when missing)."""
        root = Path(root).expanduser()
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()
        inner = LocalStore(root, automatic_cleanup=True)
        return cls(inner, url=root.as_uri(), root=root)

    @classmethod
    def s3(
        cls,
        bucket: str,
        endpoint: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        timeout_s: float = 30.0,
    ) -> ObstoreStore:
        """A store in ``bucket`` on the S3 server at ``endpoint``; nothing is contacted yet.

        Without keys requests are sent unsigned (anonymous access).
        ``timeout_s`` bounds connecting, each read and the retries of a request.
        """
        endpoint = endpoint.rstrip("/")
        target = _S3Target(endpoint, bucket, region, access_key, secret_key, timeout_s)
        timeout = timedelta(seconds=timeout_s)
        credentials: dict[str, Any] = (
            {"access_key_id": access_key, "secret_access_key": secret_key}
            if access_key and secret_key
            else {"skip_signature": True}
        )
        inner = S3Store(
            bucket,
            endpoint=endpoint,
            region=region,
            virtual_hosted_style_request=False,
            client_options={
                "allow_http": endpoint.startswith("http://"),
                "connect_timeout": timeout,
                "read_timeout": timeout,
                "timeout": timedelta(hours=6),  # whole request; stalls are caught by read_timeout
            },
            retry_config={
                "max_retries": 3,
                "retry_timeout": timeout,
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=2),
                    "base": 2,
                },
            },
            **credentials,
        )
        return cls(inner, url=f"{endpoint}/{bucket}", s3=target)

    # ----------------------------------------------------------------- writes

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        content_type: str | None = None,
        overwrite: bool = True,
        sha256: str | None = None,
    ) -> ObjectInfo:
        """Write ``data`` under ``key`` atomically; return size and sha256.

        ``sha256`` (optional) is the expected digest: it is recorded up front and
        the write is aborted with :class:`IntegrityError` when the bytes differ.
        """
        key = self._key(key)
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            digest = hashlib.sha256(raw).hexdigest()
            _check_digest(key, sha256, digest)
            return await self._write(key, _slices(raw), content_type, overwrite, digest)
        return await self._write(key, aiter(data), content_type, overwrite, sha256)

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        content_type: str | None = None,
        overwrite: bool = True,
        sha256: str | None = None,
        consume: bool = False,
    ) -> ObjectInfo:
        """Upload the file at ``path`` in chunks (multipart above :data:`PART_SIZE`).

        With ``consume=True`` and a local store on the same file system the file is
        renamed into place (atomic, no copy); ``sha256`` then must be the digest the
        caller verified, or the file is hashed once here.

        The file is never loaded whole: a large file is hashed in a first pass
        (unless ``sha256`` is given) so that the digest can be recorded with the
        object, then streamed and hashed again; a mismatch aborts the upload.
        """
        key = self._key(key)
        path = Path(path)
        if consume and self._root is not None:
            moved = await asyncio.to_thread(self._move_into, key, path, overwrite, sha256)
            if moved is not None:
                return moved
        try:
            fh = path.open("rb")
            size = os.fstat(fh.fileno()).st_size
        except FileNotFoundError as exc:
            raise NotFound(f"put_file: local file {path} does not exist") from exc
        except OSError as exc:
            raise InvalidInput(f"put_file: cannot read {path}: {exc}") from exc
        with fh:
            expected = sha256
            if expected is None and size > PART_SIZE:
                expected = await asyncio.to_thread(_hash_file, path)
            return await self._write(key, _read_chunks(fh), content_type, overwrite, expected)

    def _move_into(self, key: str, path: Path, overwrite: bool, sha256: str | None) -> ObjectInfo | None:
        """Rename ``path`` to the object's file; None when it is on another file system."""
        assert self._root is not None
        target = self._root / key
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise NotFound(f"put_file: local file {path} does not exist") from exc
        if st.st_dev != self._root.stat().st_dev:
            return None
        digest = sha256.lower() if sha256 else _hash_file(path)
        _set_xattr(path, digest, st.st_size)
        os.chmod(path, 0o644)  # partial files are private (0600); stored objects are readable like obstore's
        self._place(key, path, target, overwrite)
        return ObjectInfo(key=key, size=st.st_size, sha256=digest, last_modified=datetime.now(UTC), etag=None)

    def _place(self, key: str, path: Path, target: Path, overwrite: bool) -> None:
        """Rename ``path`` to ``target`` (create-only: hard-link, then unlink). A delete in the same directory
        removes it once empty (``automatic_cleanup``), which can happen between making the directory and the
        rename: then the directory is made again and the rename retried."""
        for attempt in range(_PLACE_ATTEMPTS):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if overwrite:
                    os.replace(path, target)
                    return
                try:
                    os.link(path, target)  # fails when the key exists: create-only, like mode="create"
                except FileExistsError as exc:
                    raise self._exists(key) from exc
                break
            except FileNotFoundError:
                if not path.exists():
                    raise NotFound(f"put_file: local file {path} does not exist") from None
                if attempt == _PLACE_ATTEMPTS - 1:
                    raise
                log.info("store.directory_removed_meanwhile", key=key, attempt=attempt + 1)
        path.unlink()

    async def _write(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str | None, overwrite: bool, expected: str | None
    ) -> ObjectInfo:
        await self._ready_for_write()
        head, exhausted = await _take(chunks, PART_SIZE)
        if exhausted:
            return await self._put_once(key, b"".join(head), content_type, overwrite, expected)
        if not overwrite and await self.exists(key):
            raise self._exists(key)
        return await self._put_multipart(key, _chain(head, chunks), content_type, expected)

    async def _put_once(
        self, key: str, raw: bytes, content_type: str | None, overwrite: bool, expected: str | None
    ) -> ObjectInfo:
        digest = hashlib.sha256(raw).hexdigest()
        _check_digest(key, expected, digest)
        mode: Literal["overwrite", "create"] = "overwrite" if overwrite else "create"
        attributes = self._attributes(content_type, digest)
        with self._errors("put", key):
            result = await obs.put_async(self._inner, key, raw, mode=mode, use_multipart=False, attributes=attributes)
        return self._written(key, len(raw), digest, result.get("e_tag"))

    async def _put_multipart(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str | None, expected: str | None
    ) -> ObjectInfo:
        hasher, size = hashlib.sha256(), 0
        attributes = self._attributes(content_type, expected)
        # Errors of the data source pass through untranslated; leaving the writer
        # by any exception aborts the upload (local staging file or S3 multipart).
        with self._errors("put", key):
            async with obs.open_writer_async(
                self._inner, key, attributes=attributes, buffer_size=PART_SIZE, max_concurrency=MAX_CONCURRENCY
            ) as writer:
                async for chunk in chunks:
                    hasher.update(chunk)
                    size += await writer.write(chunk)
                _check_digest(key, expected, hasher.hexdigest())
        return self._written(key, size, hasher.hexdigest(), None)

    def _written(self, key: str, size: int, digest: str, etag: str | None) -> ObjectInfo:
        if self._root is not None:
            _set_xattr(self._root / key, digest, size)
        log.debug("stored", store=self.url, key=key, bytes=size)
        return ObjectInfo(key=key, size=size, sha256=digest, etag=_etag(etag))

    def _attributes(self, content_type: str | None, digest: str | None) -> dict[str, str] | None:
        if self._s3 is None:
            return None  # LocalStore accepts no attributes; the digest goes to an xattr
        attrs = {"Content-Type": content_type or "application/octet-stream"}
        if digest:
            attrs[SHA256_ATTRIBUTE] = digest
        return attrs

    async def delete(self, key: str) -> None:
        """Remove one object; deleting a missing key is not an error."""
        key = self._key(key)
        try:
            with self._errors("delete", key):
                await obs.delete_async(self._inner, key)
        except NotFound:
            pass

    # ------------------------------------------------------------------ reads

    async def get(self, key: str) -> bytes:
        """Return the whole object."""
        key = self._key(key)
        with self._errors("get", key):
            result = await obs.get_async(self._inner, key)
            return bytes(await result.bytes_async())

    def stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Yield the object in chunks of about ``chunk_size`` bytes."""
        return self._stream(self._key(key), chunk_size)

    async def _stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        with self._errors("get", key):
            result = await obs.get_async(self._inner, key)
            async for chunk in result.stream(min_chunk_size=chunk_size):
                yield bytes(chunk)

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        """Return bytes ``start`` .. ``end - 1``; a range past the end is cut at the end."""
        key = self._key(key)
        if start < 0 or end < start:
            raise InvalidInput(f"invalid byte range {start}..{end} for {key!r}: need 0 <= start <= end")
        if start == end:
            await self.head(key)
            return b""
        with self._errors("get_range", key):
            return bytes(await obs.get_range_async(self._inner, key, start=start, end=end))

    async def head(self, key: str) -> ObjectInfo:
        """Return size, last modification, etag and (when recorded) sha256 of one object."""
        key = self._key(key)
        with self._errors("head", key):
            if self._root is not None:
                meta = await obs.head_async(self._inner, key)
                digest = _get_xattr(self._root / key, meta["size"])
            else:
                result = await obs.get_async(self._inner, key, options={"head": True})
                meta, digest = result.meta, result.attributes.get(SHA256_ATTRIBUTE)
        return ObjectInfo(
            key=key, size=meta["size"], sha256=digest, last_modified=meta["last_modified"], etag=_etag(meta["e_tag"])
        )

    async def exists(self, key: str) -> bool:
        """True when ``key`` exists."""
        try:
            await self.head(key)
        except NotFound:
            return False
        return True

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (plain string prefix), sorted by key."""
        prefix = safe_prefix(prefix)
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""  # obstore lists whole segments
        found: list[ObjectInfo] = []
        try:
            with self._errors("list", prefix):
                async for batch in obs.list(self._inner, prefix=directory or None, chunk_size=1000):
                    found.extend(
                        ObjectInfo(
                            key=m["path"], size=m["size"], last_modified=m["last_modified"], etag=_etag(m["e_tag"])
                        )
                        for m in batch
                        if m["path"].startswith(prefix)
                    )
        except StoreUnavailable as exc:
            if "NoSuchBucket" not in str(exc.__cause__):
                raise
            return []  # the bucket is created on first write; until then it holds nothing
        return sorted(found, key=lambda info: info.key)

    # -------------------------------------------------------------- readiness

    async def check(self) -> None:
        """Raise :class:`StoreUnavailable` when the backend cannot be used."""
        if self._root is not None:
            if not self._root.is_dir() or not os.access(self._root, os.W_OK | os.X_OK):
                raise StoreUnavailable(
                    f"local store {self._root} is missing or not writable; "
                    "create it or fix its permissions (EARTHKEEP_STORE_DIR)"
                )
            return
        response = await self._bucket_request("HEAD")
        if response.status_code in (401, 403):
            raise StoreUnavailable(
                f"{self.url} rejected the credentials (HTTP {response.status_code}); "
                "check S3_ACCESS_KEY and S3_SECRET_KEY"
            )
        if response.status_code >= 500:
            raise StoreUnavailable(f"{self.url} answered HTTP {response.status_code}; retry later")

    async def ensure_bucket(self) -> None:
        """Create the S3 bucket when it does not exist (no-op for a local store)."""
        if self._s3 is None:
            return
        region = self._s3.region
        body = (
            b""
            if region == "us-east-1"
            else (
                '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            ).encode()
        )
        response = await self._bucket_request("PUT", body)
        code = response.status_code
        if code < 300 or code == 409:  # 409: BucketAlreadyOwnedByYou / BucketAlreadyExists
            self._bucket_ready = True
            return
        if code == 403:  # no right to create buckets: it may exist anyway; writes will tell
            log.warning("bucket_create_forbidden", store=self.url)
            self._bucket_ready = True
            return
        raise StoreUnavailable(
            f"could not create bucket {self._s3.bucket!r} at {self._s3.endpoint} "
            f"(HTTP {code}: {response.text[:200]}); create it by hand or check the server"
        )

    async def _ready_for_write(self) -> None:
        if not self._bucket_ready:
            await self.ensure_bucket()

    async def _bucket_request(self, method: str, body: bytes = b"") -> httpx.Response:
        assert self._s3 is not None
        target = self._s3
        url = f"{target.endpoint}/{target.bucket}"
        headers: dict[str, str] = {}
        if target.access_key and target.secret_key:
            headers = sign_s3_request(
                method,
                url,
                region=target.region,
                access_key=target.access_key,
                secret_key=target.secret_key,
                payload=body,
            )
        try:
            async with httpx.AsyncClient(timeout=target.timeout_s, trust_env=False) as client:
                return await client.request(method, url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            reason = "timed out" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
            raise self._unreachable(f"{method} bucket", f"{reason}: {exc}") from exc

    # ---------------------------------------------------------------- helpers

    def _key(self, key: str) -> str:
        key = safe_key(key)
        if any(_STAGING.search(part) for part in key.split("/")):
            raise UnsafePath(f"object key {key!r}: a segment ending in '#<digits>' is reserved")
        if self._root is not None and not (self._root / key).resolve().is_relative_to(self._root):
            raise UnsafePath(f"object key {key!r} resolves outside the store root {self._root} (symlink?)")
        return key

    @contextmanager
    def _errors(self, op: str, key: str) -> Iterator[None]:
        """Translate obstore and OS errors into earthkeep errors, once."""
        try:
            yield
        except FileNotFoundError as exc:
            raise NotFound(f"no object {key!r} in {self.url}") from exc
        except (AlreadyExistsError, PreconditionError) as exc:
            raise self._exists(key) from exc
        except (PermissionDeniedError, UnauthenticatedError) as exc:
            raise StoreUnavailable(
                f"{self.url} refused {op} of {key!r}: {_first_line(exc)}; "
                "check S3_ACCESS_KEY, S3_SECRET_KEY and the bucket policy"
            ) from exc
        except BaseError as exc:
            text = str(exc)
            if "InvalidRange" in text or "416 Range Not Satisfiable" in text:
                raise InvalidInput(f"{op} of {key!r}: the range starts past the end of the object") from exc
            reason = next((why for marker, why in _REASONS if marker in text), None)
            if reason is not None:
                raise self._unreachable(op, reason) from exc
            raise StoreUnavailable(f"{self.url} failed during {op} of {key!r}: {_first_line(exc)}") from exc

    def _exists(self, key: str) -> Conflict:
        return Conflict(f"object {key!r} exists already in {self.url}; pass overwrite=True to replace it")

    def _unreachable(self, op: str, reason: str) -> StoreUnavailable:
        endpoint = self._s3.endpoint if self._s3 else self.url
        return StoreUnavailable(
            f"object store at {endpoint} cannot be reached during {op} ({reason}); check that the S3 "
            f"server is running and that S3_ENDPOINT={endpoint} is right, then retry"
        )


def store_from_settings(settings: StoreSettings) -> ObstoreStore:
    """The store the settings describe: S3 when ``s3_endpoint`` is set, else ``local_dir``."""
    if settings.s3_endpoint:
        return ObstoreStore.s3(
            bucket=settings.s3_bucket,
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key.get_secret_value() if settings.s3_access_key else None,
            secret_key=settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
            region=settings.s3_region,
            timeout_s=settings.timeout_s,
        )
    return ObstoreStore.local(settings.local_dir)


def sign_s3_request(
    method: str,
    url: str,
    *,
    region: str,
    access_key: str,
    secret_key: str,
    payload: bytes = b"",
    now: datetime | None = None,
) -> dict[str, str]:
    """Headers that sign a request without query string with AWS Signature V4 (service ``s3``)."""
    parts = urlsplit(url)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    payload_hash = hashlib.sha256(payload).hexdigest()
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            quote(parts.path or "/", safe="/-_.~"),
            "",
            "".join(f"{name}:{headers[name]}\n" for name in sorted(headers)),
            signed,
            payload_hash,
        ]
    )
    scope = f"{stamp[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret_key}".encode()
    for part in (stamp[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return headers


# ------------------------------------------------------------------ functions


async def _slices(raw: bytes) -> AsyncIterator[bytes]:
    view = memoryview(raw)
    for offset in range(0, len(raw), PART_SIZE):
        yield bytes(view[offset : offset + PART_SIZE])


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    head.reverse()
    while head:  # pop, so that written chunks can be freed
        yield head.pop()
    async for chunk in rest:
        yield chunk


async def _read_chunks(fh: BinaryIO) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(fh.read, FILE_CHUNK):
        yield chunk


async def _take(chunks: AsyncIterator[bytes], limit: int) -> tuple[list[bytes], bool]:
    """Read chunks until more than ``limit`` bytes are held; True when the source ended."""
    held: list[bytes] = []
    total = 0
    async for chunk in chunks:
        held.append(bytes(chunk))
        total += len(chunk)
        if total > limit:
            return held, False
    return held, True


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(FILE_CHUNK):
            hasher.update(block)
    return hasher.hexdigest()


def _check_digest(key: str, expected: str | None, actual: str) -> None:
    if expected is not None and expected.lower() != actual:
        raise IntegrityError(
            f"object {key!r}: sha256 of the bytes is {actual}, expected {expected}; nothing was stored"
        )


def _set_xattr(path: Path, digest: str, size: int) -> None:
    try:
        os.setxattr(path, SHA256_XATTR, f"{digest} {size}".encode())
    except OSError:  # the file system has no user xattrs, or the file was replaced meanwhile
        log.debug("sha256_xattr_unavailable", path=str(path))


def _get_xattr(path: Path, size: int) -> str | None:
    try:
        digest, recorded = os.getxattr(path, SHA256_XATTR).decode().split()
    except (OSError, ValueError):
        return None
    return digest if int(recorded) == size else None


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
