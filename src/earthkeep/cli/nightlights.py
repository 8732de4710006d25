"""``earthkeep nightlights``: submit monthly jobs, follow them, read results, upload GeoTIFFs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from earthkeep.cli.common import AsJson, UsageError, console, emit_json, err_console, fail, friendly, open_services

app = typer.Typer(help="Night-light electrification jobs and results (NASA Black Marble VNP46A2).",
                  no_args_is_help=True)


def _services(write: bool = True) -> Any:
    return open_services(write=write)


def _print_status(st: dict[str, Any]) -> None:
    console.print(f"request [bold]{st['id']}[/bold] area {st['area_id']} {st['source']} "
                  f"{st['start_month']}..{st['end_month']}: [bold]{st['status']}[/bold]")
    table = Table("month", "job", "status", "input", "result", "error")
    for m in st["months"]:
        acq = m["acquisition"] or {}
        table.add_row(m["month"], str(acq.get("id", "")), acq.get("status", ""), m["input"] or "",
                      "yes" if m["result"] else "", ((acq.get("error") or m["input_error"] or "")[:70]))
    console.print(table)
    etl = st["etl_processing"]
    if etl:
        console.print(f"etl_processing job {etl['id']}: {etl['status']} {etl['error'] or ''}")


@app.command("submit")
@friendly
def submit(
    area_id: int, start: str, end: str,
    source: Annotated[str | None, typer.Option(help="laads_download or earth_engine_export")] = None,
    wait: Annotated[bool, typer.Option(help="follow progress until the request ends")] = False,
) -> None:
    """Queue months START..END (YYYY-MM) of an area; a running worker (earthkeep serve) does the work."""
    from earthkeep.nightlights import requests

    services = _services()
    req = requests.submit(services, area_id, start, end, source=source)
    if wait:
        _follow(services, req.id)
    st = requests.request_status(services, req.id)
    _print_status(st)
    if wait and st["status"] != "completed":
        raise fail(f"request {req.id} {st['status']}: {_first_error(st) or 'see the table above'}")


def _first_error(st: dict[str, Any]) -> str | None:
    for m in st["months"]:
        error = (m["acquisition"] or {}).get("error") or m["input_error"]
        if error:
            return f"{m['month']}: {error}"
    return (st["etl_processing"] or {}).get("error")


def _follow(services: Any, request_id: int) -> None:
    from earthkeep.nightlights import requests

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  console=err_console) as progress:
        st = requests.request_status(services, request_id)
        task = progress.add_task(f"request {request_id}", total=len(st["months"]) + 1)
        while st["status"] not in ("completed", "failed", "cancelled"):
            time.sleep(1.0)
            st = requests.request_status(services, request_id)
            done = sum(1 for m in st["months"] if m["input"]) + (st["status"] != "running")
            progress.update(task, completed=done)


@app.command("status")
@friendly
def status(request_id: int, as_json: AsJson = False) -> None:
    """Status of a request and its jobs."""
    from earthkeep.nightlights import requests

    st = requests.request_status(_services(write=False), request_id)
    if as_json:
        emit_json(st)
        return
    _print_status(st)


@app.command("results")
@friendly
def results(
    area_id: int, start: str | None = None, end: str | None = None,
    csv: Annotated[Path | None, typer.Option(help="write the time series to this CSV file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The monthly metrics of an area (and a summary)."""
    from earthkeep.nightlights import areas
    from earthkeep.nightlights import results as res

    with _services(write=False).sessions() as s:
        areas.get_area(s, area_id)
        rows = res.timeseries(s, area_id, start=start, end=end)
    if csv:
        csv.write_text(res.to_csv(rows, res.TIMESERIES_FIELDS))
        console.print(f"{len(rows)} months written to {csv}")
        return
    if as_json:
        console.print_json(json.dumps({"timeseries": rows, "statistics": res.statistics(rows)}))
        return
    table = Table("month", "sum of lights", "mean", "median", "lit km²", "lit %", "valid %", "change %")
    for r in rows:
        table.add_row(r["month"], _f(r["sum_radiance"]), _f(r["mean_radiance"], 3), _f(r["median_radiance"], 3),
                      _f(r["lit_area_km2"]), _f(_pct(r["lit_fraction"])), _f(_pct(r["valid_fraction"])),
                      _f(r["change_vs_first_pct"]))
    console.print(table)


def _f(v: float | None, digits: int = 1) -> str:
    return "" if v is None else f"{v:,.{digits}f}"


def _pct(v: float | None) -> float | None:
    return None if v is None else 100 * v


@app.command("upload")
@friendly
def upload(area_id: int, month: str, path: Path) -> None:
    """Use your own GeoTIFF (radiance in nW/cm²/sr) as the input of an area and month."""
    from earthkeep.nightlights import requests
    from earthkeep.nightlights.uploads import submit_upload

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    services = _services()
    req = asyncio.run(submit_upload(services, area_id, month, data))
    _print_status(requests.request_status(services, req.id))
