"""``earthkeep testbed``: start any provider emulator on loopback and print the settings that point earthkeep at it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from earthkeep.cli.common import console, err_console, friendly
from earthkeep.errors import ConfigError

app = typer.Typer(help="Loopback emulators of remote providers, for tests, demos and benchmarks.",
                  no_args_is_help=True)

DEFAULT_PORTS = {"files": 8800, "gfs": 8801, "gina": 8802, "laads": 8803, "ckan": 8804}


@app.command("list")
def list_emulators() -> None:
    """The emulators `testbed serve` can start."""
    from earthkeep.testbed.emulators import EMULATORS

    table = Table("name", "default port", "emulates")
    for name, (text, _) in EMULATORS.items():
        table.add_row(name, str(DEFAULT_PORTS[name]), text)
    console.print(table)


@app.command("serve")
@friendly
def serve(
    name: Annotated[str | None, typer.Argument(help="gfs, gina, laads, ckan or files (default: files with --dir)",
                                               show_default=False)] = None,
    directory: Annotated[Path | None, typer.Option("--dir", help="where the emulator keeps its files (files: "
                                                   "the directory to serve)", file_okay=False)] = None,
    host: Annotated[str, typer.Option(help="address to bind (loopback)")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="port (default per emulator: `earthkeep testbed list`)",
                                             min=0, max=65535)] = None,
    faults: Annotated[str | None, typer.Option(help="fault rules: a JSON file or JSON text, a list or "
                                               "{\"faults\": [...]} (change them later with POST /_faults)")] = None,
    grid: Annotated[str, typer.Option(help="gfs: the grid earthkeep is told to fetch (0p25, 0p50, 1p00)")] = "1p00",
    datasets: Annotated[int, typer.Option(help="ckan: datasets in the portal", min=1, max=1_000_000)] = 300,
    token: Annotated[str | None, typer.Option(help="laads: the Earthdata token it accepts (default: a new one)",
                                              envvar="EARTHDATA_TOKEN")] = None,
    env_file: Annotated[Path | None, typer.Option("--env-file", help="also write the settings there, as `export` "
                                                  "lines to source, once the port accepts", dir_okay=False)] = None,
    seed: Annotated[int, typer.Option(help="random seed of the data and the faults")] = 0,
    rtt_ms: Annotated[float, typer.Option("--rtt-ms", help="shape the network: round-trip delay of every "
                                          "connection, ms (0: none)", min=0)] = 0.0,
    mbit: Annotated[float, typer.Option(help="shape the network: bandwidth of every connection, Mbit/s "
                                        "(0: unlimited)", min=0)] = 0.0,
) -> None:
    """Serve an emulator in the foreground; first print (stdout) the settings that point earthkeep at it."""
    import tempfile

    from earthkeep.raster.grib import GRIDS
    from earthkeep.testbed.emulators import EMULATORS, Options, shell_lines, start
    from earthkeep.testbed.runner import load_faults, run_foreground
    from earthkeep.testbed.servers import free_port

    name = name or ("files" if directory is not None else None)
    if name not in EMULATORS:
        raise typer.BadParameter(f"choose one of {', '.join(EMULATORS)}" if name else
                                 "give an emulator name (or --dir DIR to serve a directory)", param_hint="NAME")
    if grid not in GRIDS:
        raise typer.BadParameter(f"one of {', '.join(GRIDS)}", param_hint="--grid")
    if name == "files" and (directory is None or not directory.is_dir()):
        raise typer.BadParameter("files serves an existing directory: give --dir DIR", param_hint="--dir")
    root = directory or Path(tempfile.mkdtemp(prefix=f"earthkeep-testbed-{name}-"))
    try:
        rules = load_faults(Path(faults) if faults and Path(faults).is_file() else faults)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"--faults: {exc}") from exc
    running = start(name, Options(root=root, grid=grid, datasets=datasets, token=token or "", seed=seed), rules)
    bound = port if port is not None else DEFAULT_PORTS[name]
    bound = bound or free_port()
    url = f"http://{host}:{bound}"
    lines = shell_lines(running.environment(url))
    typer.echo("\n".join([f"# earthkeep testbed {name} at {url} (files in {root})", *lines]))
    sys.stdout.flush()
    for note in running.notes:
        err_console.print(f"[dim]{name}: {note}; Ctrl-C stops[/dim]", highlight=False, soft_wrap=True)

    def started() -> None:  # the env file appears once the port accepts: `until [ -s F ]` is a readiness wait
        if env_file:
            tmp = env_file.with_name(env_file.name + ".tmp")
            tmp.write_text("\n".join(lines) + "\n")
            tmp.replace(env_file)

    if not (rtt_ms or mbit):
        run_foreground(running.app, host, bound, log_level="warning", on_started=started)
        return
    from earthkeep.testbed.shaper import Shaping, shaped

    shaping = Shaping(rtt_ms=rtt_ms, mbit_per_conn=mbit)
    inner = free_port()  # the emulator listens there; the shaper takes the public port
    err_console.print(f"[dim]{name}: shaped network, {shaping.describe()}[/dim]", highlight=False)
    with shaped(f"http://{host}:{inner}", shaping, host=host, port=bound):
        run_foreground(running.app, host, inner, log_level="warning", on_started=started)
