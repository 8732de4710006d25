"""Run testbed ASGI apps under uvicorn: in a background thread for tests, or in the foreground.

``with serve_app(app) as base_url:`` binds a free port on 127.0.0.1, serves
``app`` from a daemon thread and stops it on exit. :func:`serve` is what
``earthkeep testbed serve --dir D --port P [--faults F]`` runs.

Both use a uvicorn protocol that records each connection's transport in
:data:`earthkeep.testbed.connections.CONNECTIONS`, so fault rules can reset or close
the very connection a request came on.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from earthkeep.testbed.connections import tracking_protocol
from earthkeep.testbed.faults import Fault, FaultInjector
from earthkeep.testbed.fileserver import create_file_app

START_TIMEOUT_S = 15.0


def _config(app: ASGIApp, log_level: str, **kwargs: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=tracking_protocol(),
        lifespan="off",
        log_config=None,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=30,
        **kwargs,
    )


@contextmanager
def serve_app(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> Iterator[str]:
    """Serve ``app`` on ``host:port`` (a free port by default) in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, log_level))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"testbed:{bound_port}", daemon=True)
    thread.start()
    try:
        _wait_started(server, thread)
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT_S)
        sock.close()


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the testbed server thread stopped before serving")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the testbed server did not start within {START_TIMEOUT_S} s")
        time.sleep(0.005)


def load_faults(source: Sequence[Fault | Mapping[str, Any]] | Path | str | None) -> list[Fault]:
    """Rules from a list, a JSON file path, or a JSON string (a list or ``{"faults": [...]}``)."""
    if source is None:
        return []
    if isinstance(source, Path):
        source = source.read_text()
    if isinstance(source, str):
        doc = json.loads(source)
        items = doc.get("faults", []) if isinstance(doc, dict) else doc
    else:
        items = list(source)
    return [f if isinstance(f, Fault) else Fault.from_dict(f) for f in items]


def serve(
    directory: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    faults: Sequence[Fault | Mapping[str, Any]] | Path | str | None = None,
    *,
    seed: int = 0,
    log_level: str = "info",
) -> None:
    """Serve ``directory`` with byte ranges and fault injection until interrupted (blocking).

    Rules can also be changed while running: ``POST /_faults`` (see
    :mod:`earthkeep.testbed.faults`).
    """
    app = FaultInjector(create_file_app(directory), load_faults(faults), seed=seed)
    run_foreground(app, host, port, log_level=log_level)


def run_foreground(app: ASGIApp, host: str, port: int, *, log_level: str = "info",
                   on_started: Callable[[], None] | None = None) -> None:
    """Serve ``app`` on ``host:port`` until interrupted (blocking); ``on_started`` runs once it accepts."""
    server = uvicorn.Server(_config(app, log_level, host=host, port=port))
    if on_started is not None:
        def notify() -> None:
            while not server.started and not server.should_exit:
                time.sleep(0.01)
            if server.started:
                on_started()

        threading.Thread(target=notify, name="testbed:started", daemon=True).start()
    server.run()


@contextmanager
def child_server(code: str, *args: str, timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``python -c code *args PORT`` (a server binding 127.0.0.1:PORT) in a child process.

    Benchmarks use it so the server does not share the measured process's CPU or GIL.
    Yields the base URL once the port accepts connections; terminates the child after.
    """
    import subprocess
    import sys

    from earthkeep.testbed.servers import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", code, *args, str(port)])
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the child server ({code[:60]}...) did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


FILE_SERVER_CODE = ("import sys; from pathlib import Path; from earthkeep.testbed.runner import serve; "
                    "serve(Path(sys.argv[1]), '127.0.0.1', int(sys.argv[2]), log_level='warning')")


def file_server_process(root: Path) -> contextlib.AbstractContextManager[str]:
    """The testbed file server over ``root`` in a child process; yields its base URL."""
    return child_server(FILE_SERVER_CODE, str(root))
