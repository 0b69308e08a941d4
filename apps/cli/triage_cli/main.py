"""The ``triage`` command: manage the database, models and users, send documents.

The services are not run from here: each has a command of its own (``triage-ingest``,
``triage-classifier``, ``triage-router``, ``triage-review-ui``).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from triage_cli.batch_cli import batch_app
from triage_cli.canary_cli import canary_app
from triage_cli.console import console, stdout
from triage_cli.dlq_cli import dlq_app
from triage_cli.drift_cli import drift_app
from triage_cli.model_cli import model_app
from triage_cli.policy_cli import policy_app
from triage_cli.policy_tune import policy_tune
from triage_cli.replay_cli import replay
from triage_cli.retention_cli import retention_app
from triage_cli.services import TriageGroup
from triage_cli.shadow_cli import shadow_app
from triage_cli.topics_cli import topics_app
from triage_cli.upload_cli import upload
from triage_cli.user_cli import user_app

app = typer.Typer(
    name="triage",
    help="Triage: classify inbound documents and route them to queues or human review.",
    no_args_is_help=True,
    add_completion=False,
    cls=TriageGroup,
    # Plain help (click's), which wraps at any width; rich's option tables cut option names
    # and their help into fragments at 80 columns. Inherited by every sub-command.
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Manage the PostgreSQL schema.", no_args_is_help=True)
contracts_app = typer.Typer(help="Generated contract documents.", no_args_is_help=True)
apikey_app = typer.Typer(
    help="Manage upload API keys (only their hashes are stored).", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(model_app, name="model")
app.add_typer(policy_app, name="policy")
app.add_typer(contracts_app, name="contracts")
app.add_typer(apikey_app, name="apikey")
app.add_typer(batch_app, name="batch")
app.add_typer(user_app, name="user")
app.add_typer(dlq_app, name="dlq")
app.add_typer(canary_app, name="canary")
app.add_typer(shadow_app, name="shadow")
app.add_typer(drift_app, name="drift")
app.add_typer(retention_app, name="retention")
app.add_typer(topics_app, name="topics")
app.command("replay")(replay)
app.command("upload")(upload)
policy_app.command("tune")(policy_tune)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply Alembic migrations to TRIAGE_DATABASE_URL (safe to repeat)."""
    from triage_runtime.db.engine import upgrade
    from triage_runtime.settings import CommonSettings

    url = CommonSettings().database_url
    upgrade(url, revision)
    console.print(f"database schema at [bold]{revision}[/bold]")


@contracts_app.command("asyncapi")
def contracts_asyncapi(
    out_file: Annotated[
        Path, typer.Option("--out", help="Where the AsyncAPI JSON document goes.")
    ] = Path("docs/asyncapi.json"),
    check: Annotated[
        bool, typer.Option("--check", help="Fail if the file differs from the code.")
    ] = False,
) -> None:
    """Write (or check) the AsyncAPI document generated from libs/contracts."""
    from triage_contracts.asyncapi import render_asyncapi
    from triage_runtime.service import package_version

    text = render_asyncapi(version=package_version("triage-contracts"))
    if check:
        current = out_file.read_text() if out_file.exists() else ""
        if current != text:
            console.print(f"[red]{out_file} is stale: run `triage contracts asyncapi`[/red]")
            raise typer.Exit(1)
        console.print(f"{out_file} is up to date")
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(text)
    console.print(f"wrote {out_file}")


def _api_keys() -> tuple[Any, Any]:
    from triage_runtime.apikeys import ApiKeys
    from triage_runtime.db.engine import make_async_engine
    from triage_runtime.settings import CommonSettings

    engine = make_async_engine(CommonSettings().database_url, pool_size=1)
    return engine, ApiKeys(engine)


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument(help="Who holds the key; also the documents' source.")],
    rotate: Annotated[bool, typer.Option(help="Revoke a live key of the same name first.")] = False,
) -> None:
    """Create an API key and print it once (store it now: it cannot be shown again)."""
    import re

    from sqlalchemy.exc import IntegrityError

    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,79}", name):
        console.print("[red]a key name is lower-case letters, digits, '_', '.', '-'[/red]")
        raise typer.Exit(2)

    async def run() -> str:
        engine, keys = _api_keys()
        try:
            if rotate:
                await keys.revoke(name)
            return str(await keys.create(name))
        finally:
            await engine.dispose()

    try:
        key = asyncio.run(run())
    except IntegrityError as exc:
        console.print(f"[red]a key named {name!r} exists; use --rotate or another name[/red]")
        raise typer.Exit(1) from exc
    console.print(f"created API key {name!r}; send it as the X-API-Key header")
    stdout.print(key)


@apikey_app.command("revoke")
def apikey_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key at once; uploads with it get 401."""

    async def run() -> bool:
        engine, keys = _api_keys()
        try:
            return bool(await keys.revoke(name))
        finally:
            await engine.dispose()

    if not asyncio.run(run()):
        console.print(f"[red]no live key named {name!r}[/red]")
        raise typer.Exit(1)
    console.print(f"revoked {name!r}")


@apikey_app.command("list")
def apikey_list() -> None:
    """List keys with when they were created and revoked."""

    async def run() -> list[tuple[str, Any, Any]]:
        engine, keys = _api_keys()
        try:
            return list(await keys.list())
        finally:
            await engine.dispose()

    table = Table("name", "created", "revoked")
    for name, created, revoked in asyncio.run(run()):
        table.add_row(
            name, f"{created:%Y-%m-%d %H:%M}", f"{revoked:%Y-%m-%d %H:%M}" if revoked else ""
        )
    stdout.print(table)


def main() -> None:
    """Entry point of the ``triage`` console script."""
    sys.exit(app())
