"""``earthkeep jobs``: list, show, cancel, retry, enqueue."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from earthkeep.cli.common import console, friendly, settings
from earthkeep.errors import InvalidInput

app = typer.Typer(help="The job queue.", no_args_is_help=True)


def _services():  # type: ignore[no-untyped-def]
    from earthkeep.runtime import Services

    return Services.open(settings(), migrate=True)


@app.command("list")
@friendly
def list_jobs(
    status: Annotated[str | None, typer.Option(help="pending, running, completed, failed, cancelled")] = None,
    kind: str | None = None, limit: int = 50,
) -> None:
    """List jobs, newest first."""
    services = _services()
    rows, _ = services.queue.list(status=status, kind=kind, limit=limit)
    table = Table("id", "kind", "status", "attempts", "created", "error")
    for j in rows:
        table.add_row(str(j.id), j.kind, j.status, f"{j.attempts}/{j.max_attempts}",
                      j.created_at.strftime("%Y-%m-%d %H:%M:%S"), (j.error or "")[:60])
    console.print(table)
    console.print(services.queue.counts())


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
        raise InvalidInput(f"--payload is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput("--payload must be a JSON object")
    res = _services().queue.enqueue(kind, data, dedupe_key=dedupe_key, priority=priority)
    console.print(f"job {res.job.id} {'queued' if res.created else 'already queued'}")
