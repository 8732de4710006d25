"""``earthkeep fetch URL``: download one file into the store with a progress bar."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from earthkeep.cli.common import console, err_console, friendly, settings


@friendly
def fetch(
    url: str,
    collection: Annotated[str, typer.Option(help="catalog collection")] = "downloads",
    item_id: Annotated[str | None, typer.Option(help="item id (default: file name)")] = None,
    sha256: Annotated[str | None, typer.Option(help="expected sha256")] = None,
    md5: Annotated[str | None, typer.Option(help="expected md5")] = None,
) -> None:
    """Download URL (segments, retries, checksum) into the store and catalogue it."""
    from earthkeep.errors import EarthkeepError
    from earthkeep.jobs.fetch import fetch_url
    from earthkeep.runtime import Services
    from earthkeep.transfer.urls import check_url

    services = Services.open(settings())
    payload = {"url": url, "collection": collection, "item_id": item_id, "sha256": sha256, "md5": md5}
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=err_console, transient=False) as bar:
        task = bar.add_task(url.rsplit("/", 1)[-1] or url, total=None)

        async def run() -> dict[str, object]:
            check_url(url, allow_private=services.settings.transfer.allow_private)  # before any request
            async with services.transfer() as engine:  # the size, so the bar has an end
                with contextlib.suppress(EarthkeepError):
                    bar.update(task, total=(await engine.head(url)).size)
            return await fetch_url(services, payload, progress=lambda n: bar.advance(task, n))

        result = asyncio.run(run())
    services.close()
    console.print(f"stored {result['key']} ({result['size']} bytes, sha256 {result['sha256']})", highlight=False)
