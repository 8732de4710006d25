"""What every CLI command shares: settings, the catalog, one-line errors and exit codes, the consoles.

Exit codes, the same for every command:

* ``0``: it did what was asked;
* ``1``: it could not (a job or request failed, a server is down or refused, a
  URL was refused, nothing found where something was asked for);
* ``2``: the command line or the configuration is wrong (unknown option, bad
  value, unreadable input file, a setting that cannot be used);
* ``130``: interrupted (Ctrl-C).

Results go to stdout; logs, progress bars and errors to stderr, so
``earthkeep jobs list --json | jq`` sees only JSON.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from earthkeep.config import Settings
from earthkeep.errors import ConfigError, EarthkeepError, InvalidInput
from earthkeep.logs import configure_logging
from earthkeep.settings import load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from earthkeep.runtime import Services

# On a pipe or in a file, tables take the width they need (rich would assume 80 columns and cut cells);
# on a terminal they fit it, and --wide lifts that.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 400)
err_console = Console(stderr=True)
EXIT_FAILED = 1
EXIT_USAGE = 2
F = TypeVar("F", bound=Callable[..., Any])

STATE: dict[str, Any] = {"config": None, "settings": None}


def settings() -> Settings:
    """The effective settings (loaded once per command)."""
    if STATE["settings"] is None:
        STATE["settings"] = load_settings(STATE["config"])
        s: Settings = STATE["settings"]
        configure_logging(cli_log_level(s), service=s.log.service, role="cli", fmt=s.log.format)
    return STATE["settings"]  # type: ignore[no-any-return]


def cli_log_level(s: Settings) -> str:
    """WARNING for a command unless ``LOG_LEVEL`` (or ``[log] level``) asks otherwise: results go to stdout,
    and a per-file INFO line is noise; ``earthkeep serve`` and the consumers log at ``LOG_LEVEL`` (INFO)."""
    return s.log.level if "level" in s.log.model_fields_set else "WARNING"


def set_config_file(path: Path | None) -> None:
    STATE["config"], STATE["settings"] = path, None


class UsageError(InvalidInput):
    """The command line asks for something impossible (exit 2)."""


def exit_code(exc: EarthkeepError) -> int:
    return EXIT_USAGE if isinstance(exc, UsageError | ConfigError) else EXIT_FAILED


def fail(message: str) -> typer.Exit:
    """Print ``message`` as an error line; the exception to raise for exit code 1."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_FAILED)


def friendly(fn: F) -> F:
    """Print earthkeep errors as one red line (no traceback) and exit 1, or 2 for usage errors."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EarthkeepError as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exit_code(exc)) from None
        except KeyboardInterrupt:
            err_console.print("interrupted", highlight=False)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def emit_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout (no colours, no wrapping: for scripts and jq)."""
    typer.echo(json.dumps(value, default=str, indent=2, ensure_ascii=False))


AsJson = Annotated[bool, typer.Option("--json", help="print JSON on stdout (for scripts and jq)")]


def row(obj: Any, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """A catalog row's columns (or a pydantic model's or dataclass's fields) as a dict (for ``--json``)."""
    import dataclasses

    from pydantic import BaseModel
    from sqlalchemy import inspect

    if isinstance(obj, BaseModel):
        values = obj.model_dump(mode="json")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        values = dataclasses.asdict(obj)
    else:
        values = {c.key: getattr(obj, c.key) for c in inspect(obj).mapper.column_attrs}
    return {k: v for k, v in values.items() if k not in exclude}


def set_wide(wide: bool) -> None:
    """``--wide``: tables take the width they need instead of the terminal's (or 80 columns on a pipe)."""
    if wide:
        console.width = 400


def human_size(n: int | float | None) -> str:
    """1536 -> '1.5 KiB'; None -> ''."""
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"


def open_engine(*, write: bool) -> Engine:
    """The catalog's engine: migrated first for commands that write, checked current for read-only ones.

    A read-only command never changes the schema; on a catalog without tables it
    says to run ``earthkeep db upgrade`` (exit 1).
    """
    from earthkeep.catalog.db import create_db_engine
    from earthkeep.catalog.migrate import require_current, upgrade
    from earthkeep.config import mask_url

    s = settings()
    engine = create_db_engine(s.catalog.database_url, pool_size=s.catalog.pool_size)
    try:
        if write:
            upgrade(engine)
        else:
            require_current(engine, mask_url(s.catalog.database_url))
    except BaseException:
        engine.dispose()
        raise
    return engine


def open_services(*, write: bool) -> Services:
    """Every service on the catalog (see :func:`open_engine` for ``write``)."""
    from earthkeep.catalog.migrate import require_current
    from earthkeep.config import mask_url
    from earthkeep.runtime import Services

    s = settings()
    services = Services.open(s, migrate=write)
    if not write:
        try:
            require_current(services.engine, mask_url(s.catalog.database_url))
        except BaseException:
            services.close()
            raise
    return services
