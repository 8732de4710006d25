"""What every CLI command shares: settings loading with one-line errors, the console."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from earthkeep.config import Settings, load_settings
from earthkeep.errors import EarthkeepError
from earthkeep.logs import configure_logging

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

STATE: dict[str, Any] = {"config": None, "settings": None}


def settings() -> Settings:
    """The effective settings (loaded once per command)."""
    if STATE["settings"] is None:
        STATE["settings"] = load_settings(STATE["config"])
        s: Settings = STATE["settings"]
        configure_logging(s.log.level, service=s.log.service, role="cli", fmt=s.log.format)
    return STATE["settings"]  # type: ignore[no-any-return]


def set_config_file(path: Path | None) -> None:
    STATE["config"], STATE["settings"] = path, None


def friendly(fn: F) -> F:
    """Print earthkeep errors as one red line and exit 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EarthkeepError as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]
