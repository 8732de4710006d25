"""``earthkeep granules`` (mirror, subscribe, run, elements, retention) and ``earthkeep tasks`` (list)."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from earthkeep.cli.common import AsJson, console, emit_json, err_console, friendly, open_services, row, settings

app = typer.Typer(help="Satellite granules: GINA mirror, posttroll messages, collector.", no_args_is_help=True)
tasks_app = typer.Typer(help="The product task broker.", no_args_is_help=True)


@tasks_app.callback()
def tasks_group() -> None:
    """The product task broker (``earthkeep tasks list``)."""


def _services(write: bool = True) -> Any:
    return open_services(write=write)


def _config():
    from earthkeep.granules.config import GranuleConfig

    return GranuleConfig.of(settings())


@app.command()
@friendly
def mirror(
    backfill_days: Annotated[int | None, typer.Option(help="days back (default GINA_BACKFILL_DAYS)", min=0)] = None,
) -> None:
    """Mirror GINA NRT once: list, fetch what is new, verify, catalogue, queue messages; exit 1 if a file failed."""
    from earthkeep.granules.mail import MailAlerts
    from earthkeep.granules.mirror import MirrorHooks
    from earthkeep.granules.mirror import mirror as run_mirror

    svc, cfg = _services(), _config()
    alerts = MailAlerts(cfg.mail, interval_s=cfg.viirs.mail_interval_s, port=cfg.viirs.mail_port)
    with Progress(TextColumn("[bold]mirror"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=err_console) as bar:
        task = bar.add_task("mirror", total=None)
        hooks = MirrorHooks(progress=lambda n: bar.advance(task, n),
                            planned=lambda _files, nbytes: bar.update(task, total=nbytes or None),
                            alerts=alerts)
        try:
            report = asyncio.run(run_mirror(svc, cfg, backfill_days=backfill_days, hooks=hooks))
        finally:
            alerts.flush(force=True)
            svc.close()
    table = Table("listed", "refused", "skipped", "stored", "failed", "bytes", title=f"run {report.run_id}")
    s = report.summary()
    table.add_row(*(str(s[k]) for k in ("listed", "refused", "skipped", "stored", "failed", "bytes")))
    console.print(table)
    for name, error in report.failed.items():
        err_console.print(f"[yellow]failed[/yellow] {name}: {error}", highlight=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def subscribe(
    address: Annotated[str | None, typer.Option(help="publisher (default EARTHKEEP_POSTTROLL_ADDRESS)")] = None,
    topic: Annotated[str, typer.Option(help="subscription prefix")] = "pytroll://AVO/viirs/sdr",
    count: Annotated[int, typer.Option(help="stop after this many messages (0: never)", min=0)] = 0,
) -> None:
    """Print each message's data as the collector README's example subscriber does."""
    import zmq
    from posttroll.message import Message

    addr = address or _config().viirs.publish_address.replace("*", "127.0.0.1").replace("0.0.0.0", "127.0.0.1")
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt_string(zmq.SUBSCRIBE, topic)
    socket.connect(addr)
    seen = 0
    try:
        while count == 0 or seen < count:
            msg = Message.decode(socket.recv())
            typer.echo(json.dumps(msg.data, sort_keys=True, indent=4, default=str))
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        socket.close(linger=0)
        context.term()


@app.command()
@friendly
def run(
    mirror_every: Annotated[float, typer.Option(help="seconds between mirror runs", min=1)] = 300.0,
) -> None:
    """Run the collector: publisher (ZMQ + NATS), gatherer, task intake, watcher, periodic mirror."""
    from earthkeep.events.nats import NatsSink
    from earthkeep.granules.domain import run_collector
    from earthkeep.granules.service import Collector

    svc, cfg = _services(), _config()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        nats = await NatsSink(cfg.viirs.nats_url, cfg.viirs.nats_subject).connect() if cfg.viirs.nats_url else None
        try:
            await run_collector(svc, Collector(svc, cfg, nats=nats), mirror_every_s=mirror_every, stop=stop)
        finally:
            if nats is not None:
                await nats.close()

    console.print(f"collector publishing on [bold]{cfg.viirs.publish_address}[/bold]; Ctrl-C stops")
    try:
        asyncio.run(main())
    finally:
        svc.close()


@app.command()
@friendly
def elements(url: Annotated[str | None, typer.Option(help="TLE URL (default EARTHKEEP_TLE_URL)")] = None) -> None:
    """Fetch the orbital elements file into the store."""
    from earthkeep.granules.orbits import TLE_KEY, refresh_elements

    svc, cfg = _services(), _config()
    try:
        n = asyncio.run(refresh_elements(svc, url or cfg.viirs.tle_url))
    finally:
        svc.close()
    console.print(f"stored {n} bytes of orbital elements at {TLE_KEY}")


@app.command()
@friendly
def retention() -> None:
    """Delete granules, messages and tasks older than VIIRS_RETENTION days."""
    from earthkeep.granules.retention import apply_retention

    svc, cfg = _services(), _config()
    try:
        out = asyncio.run(apply_retention(svc, cfg.core.retention_days, watch_dir=cfg.viirs.watch_dir))
    finally:
        svc.close()
    console.print_json(json.dumps(out, default=str))


@tasks_app.command("list")
@friendly
def list_tasks(
    status: Annotated[str | None, typer.Option(help="queued, claimed, done or failed")] = None,
    product: Annotated[str | None, typer.Option()] = None,
    direction: Annotated[str | None, typer.Option(help="ascending, descending or unknown")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    as_json: AsJson = False,
) -> None:
    """Tasks in queue order."""
    from earthkeep.granules import tasks

    svc = _services(write=False)
    try:
        with svc.sessions() as s:
            rows = tasks.list_tasks(s, status=status, product=product, direction=direction, limit=limit)
            counts = tasks.status_counts(s)
            rows_out = [row(t) for t in rows] if as_json else []
    finally:
        svc.close()
    if as_json:
        emit_json({"tasks": rows_out, "counts": counts})
        return
    table = Table("id", "product", "platform", "orbit", "direction", "status", "files", "updates", "node",
                  title="tasks " + ", ".join(f"{k} {v}" for k, v in counts["tasks"].items()))
    for t in rows:
        table.add_row(str(t.id), t.product, t.platform_name, str(t.orbit_number), t.direction, t.status,
                      str(len(t.data.get("dataset", []))), str(t.updates), t.node or "")
    console.print(table)
