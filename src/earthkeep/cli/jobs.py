"""``earthkeep jobs``: list, show, cancel, retry, enqueue."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from earthkeep.cli.common import AsJson, UsageError, console, emit_json, err_console, friendly, open_services
from earthkeep.errors import InvalidInput

app = typer.Typer(help="The job queue.", no_args_is_help=True)


def _services(write: bool = True) -> Any:
    return open_services(write=write)


STATUSES = "pending, running, completed, failed, cancelled"


@app.command("list")
@friendly
def list_jobs(
    status: Annotated[str | None, typer.Option(help=STATUSES)] = None,
    kind: Annotated[str | None, typer.Option(help="only this kind (e.g. forcing.collect)")] = None,
    limit: Annotated[int, typer.Option(help="rows to show", min=1, max=10_000)] = 50,
    show_all: Annotated[bool, typer.Option("--all", help="include housekeeping jobs (lease reaping, sweeps)")] = False,
    as_json: AsJson = False,
) -> None:
    """List jobs, newest first, then the totals per status."""
    from earthkeep.api.schemas import JobOut

    services = _services(write=False)
    hidden = [] if show_all or kind else services.registry.housekeeping()
    rows, _ = services.queue.list(status=status, kind=kind, limit=limit, exclude_kinds=hidden)
    counts = services.queue.counts(exclude_kinds=hidden)
    if as_json:
        emit_json({"jobs": [JobOut.model_validate(j).model_dump(mode="json") for j in rows], "counts": counts,
                   "hidden_kinds": hidden})
        return
    table = Table("id", "kind", "status", "attempts", "created", "finished", "error",
                  caption="  ".join(f"{k} {v}" for k, v in counts.items()))
    for j in rows:
        table.add_row(str(j.id), j.kind, _status(j.status), f"{j.attempts}/{j.max_attempts}", _when(j.created_at),
                      _when(j.finished_at), j.error or "")
    console.print(table)
    hidden_jobs = sum(services.queue.counts().values()) - sum(counts.values()) if hidden else 0
    if hidden_jobs:
        err_console.print(f"[dim]{hidden_jobs} housekeeping jobs ({', '.join(hidden)}) hidden: --all shows them[/dim]",
                          highlight=False)


def _when(ts: datetime | None) -> str:
    return "" if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S")


def _status(status: str) -> str:
    colour = {"failed": "red", "completed": "green", "running": "cyan", "cancelled": "yellow"}.get(status)
    return f"[{colour}]{status}[/{colour}]" if colour else status


@app.command("show")
@friendly
def show(job_id: int, as_json: AsJson = False) -> None:
    """One job in full: payload, result, the whole error, lease and times."""
    from earthkeep.api.schemas import JobOut

    job = JobOut.model_validate(_services(write=False).queue.get(job_id)).model_dump(mode="json")
    if as_json:
        emit_json(job)
        return
    table = Table("field", "value", show_header=False)
    for name, value in job.items():
        text = json.dumps(value, indent=2) if isinstance(value, dict) else "" if value is None else str(value)
        table.add_row(name, text)
    console.print(table)


@app.command()
@friendly
def cancel(job_id: int) -> None:
    """Cancel a pending or running job."""
    job = _services().queue.cancel(job_id)
    console.print(f"job {job.id} {job.status}")


@app.command()
@friendly
def retry(job_id: int) -> None:
    """Put a failed or cancelled job back in the queue."""
    job = _services().queue.retry(job_id)
    console.print(f"job {job.id} {job.status}")


@app.command()
@friendly
def enqueue(kind: str, payload: Annotated[str, typer.Option(help="JSON object")] = "{}",
            dedupe_key: str | None = None, priority: int = 0) -> None:
    """Queue a job of a registered kind."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--payload is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError("--payload must be a JSON object")
    services = _services()
    try:
        services.registry.get(kind)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc), param_hint="KIND") from None
    res = services.queue.enqueue(kind, data, dedupe_key=dedupe_key, priority=priority)
    console.print(f"job {res.job.id} {'queued' if res.created else 'already queued'}")
