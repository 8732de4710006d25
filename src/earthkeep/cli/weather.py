"""``earthkeep weather``: raw, aggregate, timeseries, consume, dead-letters, retention."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from earthkeep.cli.common import AsJson, console, emit_json, friendly, open_engine, settings
from earthkeep.errors import InvalidInput
from earthkeep.ingest.settings import IngestSettings
from earthkeep.waits import run as run_loop

app = typer.Typer(help="Station observations: queries and the consumer.", no_args_is_help=True)

Start = Annotated[datetime | None, typer.Option(help="ISO time (UTC unless a zone is given)")]
End = Annotated[datetime | None, typer.Option(help="ISO time, exclusive")]


def ingest_settings() -> IngestSettings:
    return settings().of(IngestSettings)


def _engine(write: bool = True) -> Any:
    return open_engine(write=write)


def _utc(ts: datetime | None) -> datetime | None:
    return None if ts is None else ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _measure_table(title: str, rows: list[dict[str, Any]], first: str) -> Table:
    from earthkeep.ingest.models import MEASURE_NAMES

    table = Table(first, "count", *[f"{m} min/avg/max" for m in MEASURE_NAMES], title=title)
    for row in rows:
        cells = []
        for m in MEASURE_NAMES:
            v = row[m]
            cells.append("" if not v["count"] else f"{v['min']:.1f} / {v['avg']:.1f} / {v['max']:.1f}")
        table.add_row(row["label"], str(row["count"]), *cells)
    return table


@app.command()
@friendly
def raw(station_id: str, start: Start = None, end: End = None, limit: int = 100,
        cursor: str | None = None, as_json: AsJson = False) -> None:
    """Raw observations of a station in time order (prints the cursor of the next page)."""
    from earthkeep.ingest import queries
    from earthkeep.ingest.models import MEASURE_NAMES

    s = ingest_settings()
    page = queries.raw(_engine(write=False), station_id, start=_utc(start), end=_utc(end), limit=limit, cursor=cursor,
                       timeout_ms=s.query_timeout_ms)
    if as_json:
        console.print_json(json.dumps(page))
        return
    table = Table("timestamp", *MEASURE_NAMES, title=f"{station_id}: {len(page['observations'])} observations")
    for o in page["observations"]:
        table.add_row(o["timestamp"], *["" if o[m] is None else f"{o[m]:g}" for m in MEASURE_NAMES])
    console.print(table)
    if page["next"]:
        console.print(f"next page: --cursor {page['next']}")


@app.command()
@friendly
def aggregate(station_id: str, start: Start = None, end: End = None, as_json: AsJson = False) -> None:
    """min/avg/max/count per measure over a range."""
    from earthkeep.ingest import queries

    out = queries.aggregate(_engine(write=False), station_id, start=_utc(start), end=_utc(end),
                            timeout_ms=ingest_settings().query_timeout_ms)
    if as_json:
        console.print_json(json.dumps(out))
        return
    row = {"label": f"{out['start']} .. {out['end']}", "count": out["count"], **out["measures"]}
    console.print(_measure_table(station_id, [row], "range"))


@app.command()
@friendly
def timeseries(station_id: str, start: Annotated[datetime, typer.Option(help="ISO time")],
               end: Annotated[datetime, typer.Option(help="ISO time, exclusive")],
               interval: Annotated[str, typer.Option(help="30s, 5m, 1h, 1d, 1w")] = "1h",
               as_json: AsJson = False) -> None:
    """Buckets of an interval over a range (from the hourly rollup when the interval allows)."""
    from earthkeep.ingest import queries

    s = ingest_settings()
    begin, finish = _utc(start), _utc(end)
    assert begin is not None and finish is not None
    try:
        queries.parse_interval(interval)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc), param_hint="--interval") from None
    out = queries.timeseries(_engine(write=False), station_id, start=begin, end=finish, interval=interval,
                             timeout_ms=s.query_timeout_ms, max_buckets=s.max_buckets)
    if as_json:
        console.print_json(json.dumps(out))
        return
    rows = [{"label": b["start"], **b} for b in out["buckets"]]
    console.print(_measure_table(f"{station_id} every {interval} (from {out['source']})", rows, "bucket"))


@app.command()
@friendly
def consume(
    count: Annotated[int, typer.Option(help="consumers in this process (writes in flight at once)")] = 3,
) -> None:
    """Run consumers of the JetStream stream until Ctrl-C (run as many processes as you like)."""
    import signal

    from earthkeep.ingest.cache import make_cache
    from earthkeep.ingest.consumer import run_consumers
    from earthkeep.runtime import freeze_startup_objects

    s = ingest_settings()
    engine = _engine()
    cache = make_cache(s.redis_url, s.cache_ttl_s)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stats = await run_consumers(engine, s, stop, count=count, after_commit=cache.invalidate)
        console.print(stats)

    console.print(f"consuming {s.stream} as {s.durable!r} from {s.nats_url} ({count} consumer(s)); Ctrl-C stops")
    freeze_startup_objects()
    run_loop(main())


@app.command("dead-letters")
@friendly
def dead_letters(limit: Annotated[int, typer.Option(min=1, max=100_000)] = 20, station_id: str | None = None,
                 as_json: AsJson = False) -> None:
    """The most recent refused records and why."""
    from earthkeep.ingest.deadletters import list_dead_letters

    rows = list_dead_letters(_engine(write=False), limit=limit, station_id=station_id)
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "received", "source", "station", "reason", title="dead letters")
    for d in rows:
        table.add_row(str(d["id"]), d["received_at"][:19], d["source"], d["station_id"] or "", d["reason"])
    console.print(table)


@app.command()
@friendly
def retention() -> None:
    """Apply the retention policy now (raw observations, rollups, dead letters)."""
    from earthkeep.ingest.retention import apply_retention

    s = ingest_settings()
    out = apply_retention(_engine(), raw_days=s.raw_retention_days, rollup_days=s.rollup_retention_days)
    console.print(out)


if __name__ == "__main__":
    app()
