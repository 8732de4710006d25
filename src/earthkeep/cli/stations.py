"""``earthkeep stations``: list, add, simulate."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from earthkeep.cli.common import AsJson, UsageError, console, emit_json, err_console, friendly, open_engine, row
from earthkeep.errors import InvalidInput, SourceUnavailable

app = typer.Typer(help="The station registry and the station simulator.", no_args_is_help=True)


def _sessions(write: bool = True) -> Any:
    from earthkeep.catalog.db import session_factory

    return session_factory(open_engine(write=write))


@app.command("list")
@friendly
def list_cmd(as_json: AsJson = False) -> None:
    """Every registered station."""
    from earthkeep.ingest.stations import list_stations

    with _sessions(write=False)() as s:
        rows = list_stations(s)
        if as_json:
            emit_json([row(st) for st in rows])
            return
    table = Table("id", "name", "latitude", "longitude", "elevation (m)", title=f"{len(rows)} stations")
    for st in rows:
        table.add_row(st.id, st.name, f"{st.latitude:.4f}", f"{st.longitude:.4f}",
                      "" if st.elevation is None else f"{st.elevation:g}")
    console.print(table)


@app.command()
@friendly
def add(station_id: str, name: Annotated[str, typer.Option()], latitude: Annotated[float, typer.Option()],
        longitude: Annotated[float, typer.Option()], elevation: float | None = None) -> None:
    """Register a station (or update its name, location and elevation)."""
    from pydantic import ValidationError

    from earthkeep.ingest.models import Station, describe
    from earthkeep.ingest.stations import upsert_stations

    try:
        station = Station(id=station_id, name=name, latitude=latitude, longitude=longitude, elevation=elevation)
    except ValidationError as exc:
        raise UsageError(describe(exc)) from exc
    with _sessions().begin() as s:
        upsert_stations(s, [station])
    console.print(f"station {station_id} registered")


@app.command()
@friendly
def simulate(
    url: Annotated[str, typer.Option(help="the earthkeep API")] = "http://127.0.0.1:8000",
    key: Annotated[str, typer.Option(help="API key with the ingest scope", envvar="EARTHKEEP_API_KEY")] = "",
    stations: int = 10, rate: Annotated[float, typer.Option(help="records per second")] = 100.0,
    duration: Annotated[float, typer.Option(help="seconds")] = 60.0, batch_size: int = 100,
    duplicate_rate: float = 0.02, late_rate: float = 0.01, invalid_rate: float = 0.01,
    backfill: Annotated[float, typer.Option(help="start this many seconds in the past")] = 0.0,
    register: Annotated[bool, typer.Option(help="register the stations in the catalog first")] = True,
    seed: int = 1,
) -> None:
    """Simulated stations POSTing to a running collector at a fixed rate (with faults on purpose)."""
    import httpx

    from earthkeep.ingest.simulator import Simulator, make_stations

    sim_stations = make_stations(stations, seed=seed)
    if register:
        from earthkeep.ingest.stations import upsert_stations

        with _sessions().begin() as s:
            upsert_stations(s, sim_stations)
    sim = Simulator(sim_stations, datetime.now(UTC) - timedelta(seconds=backfill), step_s=stations / rate,
                    seed=seed, duplicate_rate=duplicate_rate, late_rate=late_rate, invalid_rate=invalid_rate)
    totals = {"accepted": 0, "rejected": 0, "failed": 0}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    started = time.monotonic()
    with httpx.Client(base_url=url, headers=headers, timeout=30, trust_env=False) as client, Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
            TimeElapsedColumn(), console=err_console) as progress:
        task = progress.add_task("simulating", total=duration)
        while time.monotonic() - started < duration:
            due = started + (sim.sent + batch_size) / rate
            time.sleep(max(0.0, due - time.monotonic()))
            _post(client, sim.batch(batch_size), totals)
            progress.update(task, completed=min(duration, time.monotonic() - started),
                            description=f"accepted {totals['accepted']} rejected {totals['rejected']}")
        _post(client, sim.flush(), totals)
    console.print(f"sent {sim.sent}, accepted {totals['accepted']}, rejected {totals['rejected']}, "
                  f"failed requests {totals['failed']}, distinct valid observations {len(sim.expected)}")


def _post(client: object, records: list[dict[str, object]], totals: dict[str, int]) -> None:
    import httpx

    if not records:
        return
    assert isinstance(client, httpx.Client)
    try:
        r = client.post("/observations", json=records)
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"collector at {client.base_url} unreachable: {exc}") from exc
    if r.status_code in (401, 403):
        raise InvalidInput(f"the collector refused the key: {r.json().get('detail')}")
    if r.status_code in (202, 422) and "accepted" in r.json():
        totals["accepted"] += r.json()["accepted"]
        totals["rejected"] += r.json()["rejected"]
    else:
        totals["failed"] += 1
