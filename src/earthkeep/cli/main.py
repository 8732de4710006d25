"""``earthkeep``: serve, db, config, jobs, keys, testbed, fetch."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from earthkeep import __version__
from earthkeep.cli import catalog, jobs, keys, testbed
from earthkeep.cli.common import console, err_console, friendly, set_config_file, set_wide, settings
from earthkeep.domains import cli_commands
from earthkeep.errors import ConfigError
from earthkeep.waits import run as run_loop

app = typer.Typer(help="earthkeep: collect, keep and serve environmental data.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="The catalog database.", no_args_is_help=True)
config_app = typer.Typer(help="The effective configuration.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(jobs.app, name="jobs")
app.add_typer(catalog.items_app, name="items")
app.add_typer(catalog.runs_app, name="runs")
app.add_typer(keys.app, name="keys")
app.add_typer(testbed.app, name="testbed")
for _name, _cli in cli_commands():  # each domain's groups and commands (its Domain.cli)
    if isinstance(_cli, typer.Typer):
        app.add_typer(_cli, name=_name)
    else:
        app.command(_name)(_cli)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"earthkeep {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="earthkeep.toml to read",
                                                envvar="EARTHKEEP_CONFIG")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="tables as wide as their content (no wrapping)")] = False,
    _version: Annotated[bool, typer.Option("--version", help="print the version and exit", is_eager=True,
                                           callback=_print_version)] = False,
) -> None:
    """Exit codes: 0 done, 1 failed (a job, a server, a refused URL), 2 usage error (options, settings)."""
    set_config_file(config)
    set_wide(wide)


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
@friendly
def serve(
    role: Annotated[str, typer.Option(help="comma list of api, scheduler, worker, granules")] = "api,scheduler,worker",
    host: Annotated[str | None, typer.Option(help="API address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="API port (default 8000)")] = None,
) -> None:
    """Run the service: API, scheduler and workers in one process, or the roles given."""
    from earthkeep.logs import configure_logging
    from earthkeep.serve import parse_roles, run_service

    s = settings()
    try:
        roles = parse_roles(role)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    configure_logging(s.log.level, service=s.log.service, role=",".join(roles), fmt=s.log.format)
    if host:
        s.api.host = host
    if port is not None:
        s.api.port = port
    run_loop(run_service(s, roles))


@app.command()
@friendly
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="where the demo keeps its catalog, store and logs",
                                            file_okay=False)] = Path("demo"),
    port: Annotated[int, typer.Option(help="API port", min=1, max=65535)] = 8000,
    stations_seconds: Annotated[float, typer.Option(help="how long the simulated stations send", min=1)] = 20.0,
    timeout: Annotated[float, typer.Option(help="give up when the work takes longer (s)", min=10)] = 900.0,
    exit_after: Annotated[bool, typer.Option("--exit", help="stop once every domain is filled (exit 1 if one "
                                             "is empty) instead of serving until Ctrl-C")] = False,
) -> None:
    """Start the provider emulators and a service pointed at them, fill all five domains, show what they hold."""
    import shutil

    from rich.table import Table

    from earthkeep.demo import Demo, complete, emulators, fill, prepare, service, summary, wait_for_work

    marker = directory / ".earthkeep-demo"
    if directory.exists() and any(directory.iterdir()):
        if not marker.exists():
            raise typer.BadParameter(f"{directory} is not empty and not an earlier demo: choose another --dir",
                                     param_hint="--dir")
        shutil.rmtree(directory)  # an earlier demo: start afresh
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text("made by `earthkeep demo`; the next demo in this directory replaces it\n")
    d = Demo(directory.resolve(), port=port, stations_seconds=stations_seconds, timeout_s=timeout)
    with emulators(d.root) as env:
        prepare(d, env)
        err_console.print(f"emulators up; settings in {d.root / 'demo.env'}, keys in {d.root / 'keys.env'}")
        with service(d):
            err_console.print(f"earthkeep serve is ready at {d.api} (logs: {d.root / 'serve.log'})")
            fill(d)
            with err_console.status("collecting, mirroring, ingesting, rescuing, processing...") as st:
                wait_for_work(d, lambda c: st.update(f"demo jobs: {c['pending']} pending, {c['running']} running, "
                                                      f"{c['completed']} completed, {c['failed']} failed"))
            found = summary(d)
            table = Table("domain", "what", "count", title="what every domain holds")
            for domain, figures in found.items():
                for what, n in figures.items():
                    table.add_row(domain, what, f"{n:,}")
            console.print(table)
            empty = complete(found)
            if empty:
                err_console.print(f"[red]error:[/red] nothing in {', '.join(empty)}: see {d.root / 'serve.log'}")
            if exit_after:
                raise typer.Exit(1 if empty else 0)
            console.print(f"browse {d.api}/docs, {d.api}/stac, {d.api}/items; "
                          f"`source {d.root / 'demo.env'}` to use the CLI on it; Ctrl-C stops")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)


@db_app.command("upgrade")
@friendly
def db_upgrade(revision: str = "heads") -> None:
    """Create or migrate the catalog schema."""
    from earthkeep.catalog.db import create_db_engine
    from earthkeep.catalog.migrate import upgrade
    from earthkeep.config import mask_url

    s = settings()
    engine = create_db_engine(s.catalog.database_url)
    rev = upgrade(engine, revision)
    engine.dispose()
    console.print(f"catalog {mask_url(s.catalog.database_url)} at revision [bold]{rev}[/bold]")


@db_app.command("current")
@friendly
def db_current() -> None:
    """Show the catalog's schema revision."""
    from earthkeep.catalog.db import create_db_engine
    from earthkeep.catalog.migrate import current_revision, head_revision

    engine = create_db_engine(settings().catalog.database_url)
    console.print(f"current: {current_revision(engine)}  head: {head_revision()}")
    engine.dispose()


@config_app.command("show")
@friendly
def config_show(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Print the effective configuration, secrets masked."""
    s = settings()
    values = s.masked()
    if as_json:
        console.print_json(json.dumps(values, default=str))
        return
    table = Table("section", "setting", "value", title=f"earthkeep configuration ({s.source or 'no config file'})")
    for section, fields in values.items():
        for name, value in fields.items():
            table.add_row(section, name, "" if value is None else str(value))
    console.print(table)


@config_app.command("reference")
def config_reference() -> None:
    """Print the configuration reference as Markdown (docs/configuration.md)."""
    from earthkeep.settings import reference as reference_markdown

    typer.echo(reference_markdown())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
