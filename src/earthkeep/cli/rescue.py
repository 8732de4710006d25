"""``earthkeep rescue``: discover a CKAN portal, rank, show status, and run a rescue node."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from earthkeep.cli.common import (
    AsJson,
    UsageError,
    console,
    emit_json,
    err_console,
    friendly,
    human_size,
    open_services,
)
from earthkeep.errors import InvalidInput

app = typer.Typer(help="Data rescue: CKAN discovery, priorities, allocation to nodes, BagIt packages.",
                  no_args_is_help=True)
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def parse_bytes(text: str) -> int:
    """``500G``, ``2T``, ``1048576`` -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)i?B?\s*", text, re.I)
    if not m:
        raise UsageError(f"capacity {text!r}: expected a size like 500G, 2T or a number of bytes")
    return int(float(m.group(1)) * UNITS[m.group(2).upper()])


def _services(write: bool = True) -> Any:
    return open_services(write=write)


@app.command()
@friendly
def discover(
    portal: Annotated[str | None, typer.Option(help="CKAN base URL (default: [rescue] portal)")] = None,
    org: Annotated[list[str] | None, typer.Option(help="organization name (repeatable)")] = None,
    group: Annotated[list[str] | None, typer.Option(help="group name (repeatable)")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="tag (repeatable), e.g. climate")] = None,
    full: Annotated[bool, typer.Option(help="list everything, not only what changed")] = False,
    sweep: Annotated[bool, typer.Option(help="also mark datasets missing from the portal gone")] = False,
    force: Annotated[bool, typer.Option(help="let the sweep mark more than max_gone_fraction gone")] = False,
    probe: Annotated[bool, typer.Option(help="then HEAD new assets and scrape landing pages")] = True,
) -> None:
    """List the portal into the rescue catalog now (with history), then rank."""
    from earthkeep.rescue.domain import discover_now, rank_now, rescue_settings
    from earthkeep.rescue.probe import probe_assets

    services = _services()
    payload: dict[str, Any] = {"full": full, "sweep": sweep, "force": force}
    for name, values in (("portal", portal), ("organizations", org), ("groups", group), ("tags", tag)):
        if values:
            payload[name] = values
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err_console) as bar:
        task = bar.add_task("datasets", total=None)
        out = discover_now(services, payload, on_page=lambda n, total: bar.update(task, completed=n, total=total))
    _summary("discovery", {k: v for k, v in out.items() if not isinstance(v, (dict, list))})
    if probe:
        s = rescue_settings(services)
        with console.status("probing assets (HEAD, landing pages)"):
            counts = asyncio.run(probe_assets(services.sessions, s,
                                              allow_private=services.settings.transfer.allow_private))
            counts["ranked"] = rank_now(services)
        _summary("probe", counts)
    services.close()


def _summary(title: str, values: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False)
    for k, v in values.items():
        table.add_row(k, str(v))
    console.print(table)


@app.command()
@friendly
def rank(top: Annotated[int, typer.Option(help="rows to show", min=1, max=100_000)] = 20,
         as_json: AsJson = False) -> None:
    """Recompute every priority and show the top of the ranking with each score's parts."""
    from earthkeep.rescue.domain import rank_now, rescue_settings
    from earthkeep.rescue.priority import explain

    services = _services()
    changed = rank_now(services)
    with services.sessions() as s:
        rows = explain(s, rescue_settings(services), limit=top)
    if as_json:
        services.close()
        emit_json({"changed": changed, "ranking": rows})
        return
    table = Table(title=f"rescue ranking ({changed} scores changed)")
    for col in ("#", "score", "dataset", "kind", "size", "copies", "why"):
        table.add_column(col)
    for r in rows:
        why = ", ".join(f"{k} {v:+g}" for k, v in r["components"].items() if v)
        table.add_row(str(r["rank"]), f"{r['score']:.1f}", r["dataset"], r["kind"], human_size(r["size"]) or "?",
                      f"{r['verified_copies']}/{r['replicas']}", why)
    console.print(table)
    services.close()


@app.command()
@friendly
def status(as_json: AsJson = False) -> None:
    """Totals (datasets, assets, bytes, copies, in flight) and per node."""
    from earthkeep.rescue.domain import rescue_settings
    from earthkeep.rescue.status import status as compute

    services = _services(write=False)
    with services.sessions() as s:
        st = compute(s, rescue_settings(services))
    if as_json:
        services.close()
        emit_json(st)
        return
    _summary("datasets", st["datasets"])
    _summary("assets", {k: v for k, v in st["assets"].items() if not isinstance(v, dict)})
    _summary("copies", {k: v for k, v in st["copies"].items() if not isinstance(v, dict)} | {
        "in flight": st["in_flight"]["leases"], "in flight bytes": st["in_flight"]["bytes"]})
    table = Table(title="nodes")
    for col in ("id", "name", "capacity", "free", "in flight", "done", "failed", "expired", "held"):
        table.add_column(col)
    for n in st["nodes"]:
        table.add_row(str(n["id"]), str(n["name"]), human_size(n["capacity_bytes"]), human_size(n["free_bytes"]),
                      *(str(n[k]) for k in ("in_flight", "done", "failed", "expired")), human_size(n["bytes_held"]))
    console.print(table)
    services.close()


class _Bars:
    """rich progress bars for a node: one per download, one for the round."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.tasks: dict[int, Any] = {}
        self.total = bar.add_task("assets", total=0)

    def started(self, lease: dict[str, Any]) -> None:
        self.bar.update(self.total, total=(self.bar.tasks[self.total].total or 0) + 1)
        self.tasks[lease["allocation_id"]] = self.bar.add_task(lease["filename"][:40], total=lease.get("size"))

    def advanced(self, lease: dict[str, Any], nbytes: int) -> None:
        self.bar.advance(self.tasks[lease["allocation_id"]], nbytes)

    def finished(self, lease: dict[str, Any], ok: bool, note: str) -> None:
        self.bar.remove_task(self.tasks.pop(lease["allocation_id"]))
        self.bar.advance(self.total, 1)
        if not ok:
            console.print(f"[yellow]failed[/yellow] {lease['url']}: {note[:200]}", highlight=False)


NODE_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells report it


@app.command()
@friendly
def node(
    server: Annotated[str, typer.Option(help="rescue server base URL")],
    token: Annotated[str, typer.Option(help="API key with the node scope", envvar="EARTHKEEP_NODE_TOKEN")],
    dir: Annotated[Path, typer.Option("--dir", help="where bags are written")],
    capacity: Annotated[str, typer.Option(help="space to offer, e.g. 500G")] = "100G",
    name: Annotated[str | None, typer.Option(help="node name (default: host name)")] = None,
    once: Annotated[bool, typer.Option(help="one allocation round: one batch of leases, rescue them, exit")] = False,
    batch: Annotated[int, typer.Option(help="assets per allocation", min=1, max=1000)] = 20,
    concurrency: Annotated[int, typer.Option(help="downloads at once", min=1)] = 4,
    allow_private: Annotated[bool, typer.Option(help="allow loopback/private URLs (testbeds only)")] = False,
) -> None:
    """Take leases from SERVER, fetch with the transfer engine, write BagIt bags under DIR, report back.

    Exit status: 0 when the rounds ran (failed assets are reported to the server), 1 when the server
    cannot be reached or refuses the key, 2 for a usage error; on SIGINT (Ctrl-C) or SIGTERM the
    node gives its leases back first and exits 130 or 143.
    """
    from earthkeep.config import TransferSettings
    from earthkeep.errors import EarthkeepError
    from earthkeep.rescue.node import HttpNodeClient, RescueNode
    from earthkeep.store.obstore import ObstoreStore

    try:
        capacity_bytes = parse_bytes(capacity)
        dir.mkdir(parents=True, exist_ok=True)
    except (InvalidInput, OSError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    transfer = TransferSettings(work_dir=dir / ".partial", allow_private=allow_private)

    async def go() -> tuple[Any, signal.Signals | None]:
        client = HttpNodeClient(server, token)
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                          console=err_console) as bar:
                rn = RescueNode(client, ObstoreStore.local(dir), transfer, name=name or socket.gethostname(),
                                capacity_bytes=capacity_bytes, directory=dir, concurrency=concurrency,
                                batch=batch, progress=_Bars(bar))
                return await _until_signalled(rn.run(max_rounds=1 if once else None)), None
        except _Signalled as stop:
            return rn.stats, stop.signal
        finally:
            await client.aclose()

    try:
        stats, stopped = asyncio.run(go())
    except EarthkeepError as exc:  # the server: unreachable, refusing the key, or not a rescue server
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"rounds {stats.rounds}, leases {stats.leases}, done {stats.done}, failed {stats.failed}, "
                  f"lost {stats.lost}, {human_size(stats.bytes)}", highlight=False)
    if stopped is not None:
        console.print(f"stopped by {stopped.name}: {stats.released} leases given back", highlight=False)
        raise typer.Exit(NODE_EXIT[stopped])


class _Signalled(Exception):
    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(sig.name)
        self.signal = sig


async def _until_signalled(work: Coroutine[Any, Any, Any]) -> Any:
    """Run ``work``; SIGINT or SIGTERM cancels it (it cleans up) and raises :class:`_Signalled`."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    got: list[signal.Signals] = []

    def stop(sig: signal.Signals) -> None:
        got.append(sig)
        task.cancel()  # a second signal cancels the clean-up too

    for sig in NODE_EXIT:
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await task
    except asyncio.CancelledError:
        if not got:
            raise
        raise _Signalled(got[0]) from None
    finally:
        for sig in NODE_EXIT:
            loop.remove_signal_handler(sig)
