"""Finding and loading a model by artifact path, registered version or alias."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from triage_cli.console import console


def cache_dir() -> Path:
    """Where fetched artifacts are kept locally (TRIAGE_MODEL_CACHE_DIR)."""
    return Path(os.environ.get("TRIAGE_MODEL_CACHE_DIR", ".stack/model-cache"))


def looks_like_path(reference: str) -> bool:
    """Whether a model reference is meant as a path (versions and aliases have no slash)."""
    return "/" in reference or os.sep in reference or reference.startswith(".")


def locate(reference: str) -> Path:
    """Return a local artifact directory for a path, a registered version, or an alias.

    A path that is not a directory is refused (exit 2) before the registry is asked."""
    if Path(reference).is_dir():
        return Path(reference)
    if looks_like_path(reference):
        console.print(
            f"[red]no such model directory: {escape(reference)}[/red]",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    from triage_cli.registry_cli import run_with_registry
    from triage_runtime.registry import ALIASES

    async def find(registry: Any) -> Path:
        version = reference
        if reference in ALIASES:
            resolved = await registry.resolve(reference)
            if resolved is None:
                console.print(f"[red]the alias {reference!r} points at no model[/red]")
                raise typer.Exit(1)
            version = resolved
        path: Path = await registry.fetch(version, cache_dir=cache_dir())
        return path

    result: Path = run_with_registry(find)
    return result


def load_model(reference: str, *, prepare: bool = True) -> Any:
    """Load a model (integrity-checked) by path, version or alias, or exit with the reason.

    ``prepare=False`` leaves an embedder's model unloaded, for commands that score in other
    processes (each loads it there)."""
    from triage_ml import model as model_lib

    path = locate(reference)
    try:
        return model_lib.load(path, prepare=prepare)
    except model_lib.ModelLoadError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc


def resolve_alias(alias: str) -> str | None:
    """The version an alias points at, or None."""
    from triage_cli.registry_cli import run_with_registry

    async def find(registry: Any) -> str | None:
        version: str | None = await registry.resolve(alias)
        return version

    return run_with_registry(find)
