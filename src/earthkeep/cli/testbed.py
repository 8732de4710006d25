"""``earthkeep testbed serve``: the loopback file server with optional faults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from earthkeep.cli.common import friendly

app = typer.Typer(help="Loopback emulators of remote providers, for tests, demos and benchmarks.",
                  no_args_is_help=True)


@app.command("serve")
@friendly
def serve(
    directory: Annotated[Path, typer.Option("--dir", help="directory to serve", exists=True, file_okay=False)],
    host: str = "127.0.0.1",
    port: int = 8800,
) -> None:
    """Serve a directory over HTTP with Range support (faults configurable at POST /_faults)."""
    from earthkeep.testbed.runner import serve as run

    run(directory, host, port)
