"""Running one command's work against TRIAGE_DATABASE_URL, and who the command acts as."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.markup import escape

from triage_cli.console import console

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

S = TypeVar("S")
T = TypeVar("T")


def run_on_database(
    build: Callable[[AsyncEngine], S],
    action: Callable[[S], Awaitable[T]],
    *,
    refused: tuple[type[Exception], ...] = (),
    code: int = 1,
) -> T:
    """Build a store on the database, run ``action`` with it, dispose of the engine; an error
    of a ``refused`` type is printed and exits with ``code``."""
    from triage_runtime.db.engine import make_async_engine
    from triage_runtime.settings import CommonSettings

    async def run() -> T:
        engine = make_async_engine(CommonSettings().database_url, pool_size=1)
        try:
            return await action(build(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except refused as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", highlight=False)
        raise typer.Exit(code) from exc


def default_actor() -> str:
    """Who acts when no --actor is given: the OS user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
