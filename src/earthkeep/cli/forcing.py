"""``earthkeep forcing ...``: collect GFS wind and Copernicus Marine currents, report gaps, export NetCDF.

``cleanup`` is also meant to be mounted at the top level (``earthkeep cleanup --dry-run``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from earthkeep.cli.common import AsJson, UsageError, console, emit_json, err_console, friendly, open_services

if TYPE_CHECKING:
    pass

app = typer.Typer(help="Forcing data for drift models: GFS wind, Copernicus Marine currents.", no_args_is_help=True)


def _when(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--{name} {text!r} is not an ISO 8601 time like 2024-01-01T00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _bbox(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError("--bbox must be four numbers: west,south,east,north") from None


def _services(write: bool = True) -> Any:
    return open_services(write=write)


@app.command()
@friendly
def collect(
    history: Annotated[bool, typer.Option(help="also check the past HISTORICAL_DAYS and fill gaps")] = True,
    currents: Annotated[bool, typer.Option(help="also collect Copernicus Marine currents")] = True,
) -> None:
    """Collect now: the latest complete GFS cycle (and history gaps), then currents; exit 1 on a failed run."""
    from earthkeep.forcing.collect import collect_currents, collect_wind
    from earthkeep.forcing.settings import forcing_config

    services = _services()
    cfg = forcing_config(services.settings)
    now = datetime.now(UTC)
    try:
        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), console=err_console) as bar:
            task = bar.add_task("GFS wind", total=None)
            reports = [asyncio.run(collect_wind(services, cfg, now=now, history=history,
                                                progress=lambda n: bar.advance(task, n)))]
        if currents:
            reports.append(asyncio.run(collect_currents(services, cfg, now=now)))
    finally:
        services.close()
    table = Table("source", "status", "files", "bytes", "error")
    for r in reports:
        table.add_row(r.source, r.status, str(r.records), str(r.nbytes), r.error or "")
    console.print(table)
    if any(r.status == "failed" for r in reports):
        raise typer.Exit(1)


@app.command()
@friendly
def gaps(as_json: AsJson = False) -> None:
    """List what the 3-hourly wind series over HISTORICAL_DAYS lacks, and why."""
    from earthkeep.forcing.collect import gap_report
    from earthkeep.forcing.settings import forcing_config

    services = _services(write=False)
    try:
        report = gap_report(services, forcing_config(services.settings), now=datetime.now(UTC))
    finally:
        services.close()
    if as_json:
        emit_json([dataclasses.asdict(g) for g in report])
        return
    if not report:
        console.print("no gaps: the analysis series is complete")
        return
    table = Table("valid time (UTC)", "file", "reason")
    for g in report:
        table.add_row(f"{g.valid_time:%Y-%m-%d %H:%M}", g.file_id, g.reason)
    console.print(table)
    console.print(f"{len(report)} missing file(s)")


@app.command()
@friendly
def export(
    out: Annotated[Path, typer.Argument(help="NetCDF file to write")],
    start: Annotated[str, typer.Option(help="first valid time, ISO 8601 (UTC when no zone)")],
    end: Annotated[str, typer.Option(help="last valid time")],
    bbox: Annotated[str | None, typer.Option(help="west,south,east,north in degrees")] = None,
    kind: Annotated[str, typer.Option(help="wind or currents")] = "wind",
) -> None:
    """Write one CF NetCDF (time merged across cycles, freshest forecast first) that OpenDrift reads."""
    from earthkeep.forcing.export import load_forcing, write_netcdf

    services = _services(write=False)
    try:
        ds = asyncio.run(load_forcing(services, kind, _when(start, "start"), _when(end, "end"), _bbox(bbox)))
    finally:
        services.close()
    write_netcdf(ds, out)
    console.print(f"wrote {out}: {', '.join(map(str, ds.data_vars))}, {ds.sizes['time']} times, "
                  f"{ds.sizes['lat']}x{ds.sizes['lon']} points", highlight=False)


@friendly
def cleanup(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would be deleted, delete nothing")] = False,
) -> None:
    """Delete forcing files whose valid time is older than MAX_DATA_AGE_DAYS (the latest complete
    forecast is always kept)."""
    from earthkeep.forcing.retention import cleanup as run_cleanup
    from earthkeep.forcing.settings import forcing_config

    services = _services()
    try:
        stats = asyncio.run(run_cleanup(services, forcing_config(services.settings), now=datetime.now(UTC),
                                        dry_run=dry_run))
    finally:
        services.close()
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {stats['delete']} file(s), {stats['bytes']} bytes (valid before {stats['cutoff']}); "
                  f"kept {stats['kept']}, protected as latest forecast {stats['protected']}", highlight=False)
    for name in stats.get("files", []):
        console.print(f"  {name}", highlight=False)


app.command("cleanup")(cleanup)
