"""``earthkeep areas``: add, list, show, delete areas of interest (GeoJSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from earthkeep.cli.common import AsJson, UsageError, console, emit_json, friendly, open_services, row

app = typer.Typer(help="Areas of interest for night-light monitoring.", no_args_is_help=True)


def _services(write: bool = True) -> Any:
    return open_services(write=write)


@app.command("add")
@friendly
def add(
    path: Annotated[Path, typer.Argument(help="GeoJSON file: Polygon, MultiPolygon, Feature, FeatureCollection")],
    name: Annotated[str | None, typer.Option(help="name (default: the GeoJSON 'name' property)")] = None,
    repair: Annotated[bool, typer.Option(help="repair an invalid geometry with make_valid")] = False,
    each_feature: Annotated[bool, typer.Option("--each-feature", help="one area per feature")] = False,
) -> None:
    """Check a GeoJSON file and record it as one area (or one per feature)."""
    from earthkeep.nightlights import areas
    from earthkeep.nightlights.geometry import parse_area, parse_features
    from earthkeep.nightlights.requests import nl_settings

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    services = _services()
    limits = areas.limits(nl_settings(services))
    parsed = parse_features(data, repair=repair, limits=limits) if each_feature else [
        parse_area(data, repair=repair, limits=limits)]
    with services.sessions.begin() as s:
        created = [areas.create_area(s, p, name=None if each_feature else (name or p.name or path.stem))
                   for p in parsed]
        rows = [(a.id, a.name, a.area_km2, p.repaired) for a, p in zip(created, parsed, strict=True)]
    for area_id, area_name, km2, repaired in rows:
        note = " (repaired)" if repaired else ""
        console.print(f"area [bold]{area_id}[/bold] {area_name!r}: {km2:,.1f} km²{note}")


@app.command("list")
@friendly
def list_areas(limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100, as_json: AsJson = False) -> None:
    """List areas."""
    from earthkeep.nightlights import areas

    with _services(write=False).sessions() as s:
        if as_json:
            emit_json([row(a, exclude=("geometry", "geometry_wkb", "geom")) for a in areas.list_areas(s, limit=limit)])
            return
        table = Table("id", "name", "km²", "vertices", "bbox")
        for a in areas.list_areas(s, limit=limit):
            table.add_row(str(a.id), a.name, f"{a.area_km2:,.1f}", str(a.vertices),
                          f"{a.west:.3f},{a.south:.3f},{a.east:.3f},{a.north:.3f}")
    console.print(table)


@app.command("show")
@friendly
def show(area_id: int, as_json: AsJson = True) -> None:
    """Print an area as a GeoJSON Feature (JSON is the only form; --json is accepted for symmetry)."""
    from earthkeep.nightlights import areas

    with _services(write=False).sessions() as s:
        emit_json(areas.area_feature(areas.get_area(s, area_id)))


@app.command("delete")
@friendly
def delete(area_id: int, yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False) -> None:
    """Delete an area, its results and its stored composites and tiles."""
    import asyncio

    from earthkeep.nightlights import areas
    from earthkeep.nightlights.processing import purge_objects

    if not yes:
        typer.confirm(f"delete area {area_id} and all its results?", abort=True)
    services = _services()
    with services.sessions.begin() as s:
        areas.delete_area(s, area_id)
    n = asyncio.run(purge_objects(services, area_id))
    console.print(f"area {area_id} deleted ({n} stored objects removed)")
