"""``earthkeep items`` and ``earthkeep runs``: what the catalog holds and what the collections did."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from earthkeep.cli.common import AsJson, UsageError, console, emit_json, friendly, human_size, open_engine
from earthkeep.errors import InvalidInput

items_app = typer.Typer(help="Catalog items (every domain's files).", no_args_is_help=True)
runs_app = typer.Typer(help="The run ledger: every collection, mirror and job run with its counts.",
                       no_args_is_help=True)


def _sessions() -> Any:
    from earthkeep.catalog.db import session_factory

    return session_factory(open_engine(write=False))


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--{name} {value!r} is not an ISO 8601 time like 2024-01-01T00:00Z") from None
    if ts.tzinfo is None:
        raise UsageError(f"--{name} {value!r} needs a time zone (e.g. Z)")
    return ts


@items_app.command("list")
@friendly
def list_items(
    collection: Annotated[str | None, typer.Option(help="only this collection (gfs-wind, downloads, ...)")] = None,
    start: Annotated[str | None, typer.Option(help="valid at or after (ISO 8601 with zone)")] = None,
    end: Annotated[str | None, typer.Option(help="valid at or before")] = None,
    bbox: Annotated[str | None, typer.Option(help="west,south,east,north in degrees")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    cursor: Annotated[str | None, typer.Option(help="the `next` cursor of the previous page")] = None,
    as_json: AsJson = False,
) -> None:
    """Items in catalog order, with their assets' total size; `--cursor` pages on."""
    from earthkeep.api.routers.items import parse_bbox
    from earthkeep.api.schemas import ItemOut
    from earthkeep.catalog.items import ItemQuery, search_items

    try:
        box = parse_bbox(bbox)
    except InvalidInput as exc:
        raise UsageError(f"--bbox: {exc}") from None
    query = ItemQuery(collection, _time(start, "start"), _time(end, "end"), box, limit, cursor)
    with _sessions()() as s:
        page = search_items(s, query)
        items = [ItemOut.of(i).model_dump(mode="json") for i in page.items]
    if as_json:
        emit_json({"items": items, "next": page.next_cursor})
        return
    table = Table("collection", "item", "valid from", "valid to", "assets", "size", "bbox")
    for it in items:
        table.add_row(it["collection"], it["item_id"], (it["start_datetime"] or "")[:19],
                      (it["end_datetime"] or "")[:19], str(len(it["assets"])),
                      human_size(sum(a["size"] for a in it["assets"])),
                      ",".join(f"{v:g}" for v in it["bbox"]) if it["bbox"] else "")
    console.print(table)
    if page.next_cursor:
        console.print(f"next page: --cursor {page.next_cursor}", highlight=False, soft_wrap=True)


@items_app.command("show")
@friendly
def show_item(collection: str, item_id: str, as_json: AsJson = False) -> None:
    """One item with every asset (store key, size, sha256, media type)."""
    from earthkeep.api.schemas import ItemOut
    from earthkeep.catalog.items import get_item

    with _sessions()() as s:
        item = ItemOut.of(get_item(s, collection, item_id)).model_dump(mode="json")
    if as_json:
        emit_json(item)
        return
    console.print(f"[bold]{collection}/{item_id}[/bold] {item['start_datetime'] or ''} .. "
                  f"{item['end_datetime'] or ''}", highlight=False)
    table = Table("asset", "size", "media type", "sha256", "key")
    for a in item["assets"]:
        table.add_row(a["name"], human_size(a["size"]), a["media_type"] or "", a["sha256"] or "", a["store_key"])
    console.print(table)


@runs_app.command("list")
@friendly
def list_runs(
    source: Annotated[str | None, typer.Option(help="only this source (gfs, cmems, gina, ...)")] = None,
    status: Annotated[str | None, typer.Option(help="running, completed, partial or failed")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 30,
    as_json: AsJson = False,
) -> None:
    """Runs newest first: what each collection fetched, how much, and its error."""
    from earthkeep.api.schemas import RunOut
    from earthkeep.catalog.runs import list_runs as _list

    with _sessions()() as s:
        runs = [RunOut.model_validate(r).model_dump(mode="json") for r in _list(s, source=source, status=status,
                                                                                limit=limit)]
    if as_json:
        emit_json(runs)
        return
    table = Table("started", "source", "collection", "status", "records", "size", "failed", "error")
    for r in runs:
        table.add_row(r["started_at"][:19], r["source"], r["collection"] or "", r["status"],
                      str(r["records_collected"]), human_size(r["bytes_collected"]), str(r["records_failed"]),
                      r["error_message"] or "")
    console.print(table)
