"""``earthkeep keys``: create, list, revoke API keys."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from earthkeep.cli.common import AsJson, console, emit_json, friendly, open_engine, row

app = typer.Typer(help="API keys (stored hashed; the secret is shown once).", no_args_is_help=True)


def _sessions(write: bool = True) -> Any:
    from earthkeep.catalog.db import session_factory

    return session_factory(open_engine(write=write))


@app.command()
@friendly
def create(
    scope: Annotated[list[str], typer.Option("--scope", help="read, ingest, node or admin; repeatable")],
    name: Annotated[str, typer.Option(help="who or what uses the key")] = "default",
) -> None:
    """Create a key; prints the secret once."""
    from earthkeep.apikeys import SCOPES, create_key

    scopes = [s.strip() for item in scope for s in item.split(",") if s.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise typer.BadParameter(f"scopes are some of {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}",
                                 param_hint="--scope")
    with _sessions().begin() as s:
        key, secret = create_key(s, name, scopes)
        key_id = key.id
    console.print(f"id {key_id}  scopes {','.join(sorted(scopes))}", highlight=False)
    console.print(secret, highlight=False, soft_wrap=True)


@app.command("list")
@friendly
def list_keys(as_json: AsJson = False) -> None:
    """List keys (never their secrets)."""
    from earthkeep.apikeys import list_keys as _list

    with _sessions(write=False)() as s:
        rows = _list(s)
        if as_json:
            emit_json([row(k, exclude=("key_hash",)) for k in rows])
            return
        table = Table("id", "prefix", "name", "scopes", "created", "revoked", "last used")
        for k in rows:
            table.add_row(k.id, k.prefix, k.name, ",".join(k.scopes), str(k.created_at)[:19],
                          str(k.revoked_at or "")[:19], str(k.last_used_at or "")[:19])
    console.print(table)


@app.command()
@friendly
def revoke(key: Annotated[str, typer.Argument(help="key id or prefix")]) -> None:
    """Revoke a key."""
    from earthkeep.apikeys import revoke_key

    with _sessions().begin() as s:
        k = revoke_key(s, key)
        console.print(f"revoked {k.id} ({k.name})")
