"""Fixtures for every suite: real servers on loopback, the object store, and no network.

Servers start lazily, once per session, on free 127.0.0.1 ports (see
:mod:`earthkeep.testbed.servers`); databases and buckets are fresh per test.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from earthkeep.store.obstore import ObstoreStore
from earthkeep.testbed.servers import NatsServer, PostgresServer, RedisServer, SeaweedS3Server

# ------------------------------------------------------------ network guard

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class NetworkBlocked(ConnectionRefusedError):
    """A test tried to reach beyond loopback."""


def is_loopback(host: Any) -> bool:
    """True for 127.0.0.0/8, ::1, ::ffff:127.x, the unspecified address and localhost names."""
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).split("%", 1)[0]
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or ip.is_unspecified or bool(mapped and mapped.is_loopback)


def _guard(original: Callable[..., Any], where: Callable[[tuple[Any, ...]], Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def guarded(self: socket.socket, *args: Any) -> Any:
        address = where(args)
        inet = self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple)
        if inet and not is_loopback(address[0]):
            raise NetworkBlocked(
                f"tests may only use loopback: connection to {address[0]}:{address[1]} refused "
                "(start a local server from earthkeep.testbed instead)"
            )
        return original(self, *args)

    return guarded


@pytest.fixture(scope="session", autouse=True)
def _no_network() -> Iterator[None]:
    """Refuse connections beyond loopback from Python sockets (AF_UNIX is untouched)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("connect", "connect_ex"):
            mp.setattr(socket.socket, name, _guard(getattr(socket.socket, name), lambda a: a[0]))
        mp.setattr(socket.socket, "sendto", _guard(socket.socket.sendto, lambda a: a[-1]))
        yield


# ------------------------------------------------------------------ servers


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """PostgreSQL: ``.url`` (database ``postgres``), ``create_database()``, ``stop()``, ``start()``."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database on the session's PostgreSQL."""
    if not postgres_server.running:  # a previous test stopped it
        postgres_server.start()
    name = f"t_{uuid.uuid4().hex[:16]}"
    yield postgres_server.create_database(name)
    with contextlib.suppress(Exception):
        postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3Server]:
    """SeaweedFS S3: ``.url`` (endpoint), ``.access_key``, ``.secret_key``, ``.region``."""
    with SeaweedS3Server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: SeaweedS3Server) -> str:
    """Name of a fresh bucket on the session's S3 server."""
    return s3_server.create_bucket(f"t-{uuid.uuid4().hex[:16]}")


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """NATS with JetStream: ``.url``."""
    with NatsServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Redis without persistence: ``.url``."""
    with RedisServer() as server:
        yield server


# -------------------------------------------------------------------- store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> ObstoreStore:
    """The store port on a local directory (tmp_path/store) and on SeaweedFS (fresh bucket)."""
    if request.param == "local":
        return ObstoreStore.local(tmp_path / "store")
    server: SeaweedS3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return ObstoreStore.s3(bucket, server.url, server.access_key, server.secret_key, server.region, timeout_s=10)


@pytest.fixture(autouse=True)
def _fresh_structlog():
    """Each test starts and ends with structlog's defaults (CLI tests reconfigure logging)."""
    import structlog

    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
