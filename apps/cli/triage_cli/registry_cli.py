"""Registry commands: list, show, register, roll back and set model aliases.

The database is TRIAGE_DATABASE_URL; artifacts live in TRIAGE_MODEL_STORE_URL (a directory,
``file:///abs/path`` or ``s3://bucket/prefix``, default ``.stack/model-store``), with S3
settings from TRIAGE_S3_*. Results go to stdout, messages to stderr.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from triage_cli.console import console, stdout
from triage_cli.database import default_actor, run_on_database

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from triage_runtime.registry import ArtifactStore, ModelRegistry, VersionInfo

registry_app = typer.Typer(
    help="The model registry: registered versions, aliases and their history.",
    no_args_is_help=True,
    add_completion=False,
)

T = TypeVar("T")


class AliasName(StrEnum):
    """The aliases a version can hold."""

    CHAMPION = "champion"
    CANARY = "canary"
    SHADOW = "shadow"


ActorOption = Annotated[
    str | None,
    typer.Option(help="Who is acting, for the history (default: your OS user name)."),
]
ReasonOption = Annotated[str, typer.Option(help="Why, for the history.")]


def open_store(*, create_bucket: bool = False) -> ArtifactStore:
    """Return the artifact store TRIAGE_MODEL_STORE_URL names, with TRIAGE_S3_* settings."""
    from triage_runtime.registry import (
        DEFAULT_MODEL_STORE_URL,
        MODEL_STORE_URL_ENV,
        artifact_store_from_url,
    )
    from triage_runtime.settings import CommonSettings

    settings = CommonSettings()
    return artifact_store_from_url(
        os.environ.get(MODEL_STORE_URL_ENV) or DEFAULT_MODEL_STORE_URL,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        create_bucket=create_bucket,
    )


def run_with_registry(
    action: Callable[[ModelRegistry], Awaitable[T]], *, create_bucket: bool = False
) -> T:
    """Run ``action`` against the configured registry; registry errors exit with status 1."""
    from triage_runtime.registry import ModelRegistry, RegistryError

    def build(engine: AsyncEngine) -> ModelRegistry:
        return ModelRegistry(engine, open_store(create_bucket=create_bucket))

    return run_on_database(build, action, refused=(RegistryError,))


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else ""


def _f1(info: VersionInfo) -> str:
    value = info.eval_macro_f1
    return f"{value:.4f}" if value is not None else ""


def eval_summary(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return the scalar entries of an evaluation report (top level and under ``metrics``)."""
    if report is None:
        return None
    scalars = (str, int, float, bool)
    summary = {k: v for k, v in report.items() if isinstance(v, scalars)}
    metrics = report.get("metrics")
    if isinstance(metrics, dict):
        summary.update({k: v for k, v in metrics.items() if isinstance(v, scalars)})
    return summary


@registry_app.command("list")
def registry_list() -> None:
    """List registered versions with their evaluation macro-F1 and aliases."""

    async def run(registry: ModelRegistry) -> list[VersionInfo]:
        return await registry.versions()

    infos = run_with_registry(run)
    table = Table("version", "kind", "created", "macro-F1", "aliases", "registered by")
    for info in infos:
        table.add_row(
            info.version,
            info.kind,
            _when(info.created_at),
            _f1(info),
            ", ".join(info.aliases),
            info.registered_by,
        )
    if not infos:
        console.print("no model versions are registered")
    stdout.print(table)
    _print_traffic({alias for info in infos for alias in info.aliases})


def _print_traffic(aliases: set[str]) -> None:
    """What the routing policy gives the canary and the shadow, and where that is idle."""
    from triage_cli.policy_cli import current_policy

    policy = current_policy()
    partitions = ", ".join(str(p) for p in sorted(policy.canary_partitions))
    version = f"v{policy.version}" if policy.version is not None else "default"
    if "canary" in aliases:
        stdout.print(
            f"canary scores partitions {partitions} (routing policy {version})"
            if partitions
            else f"canary scores nothing: routing policy {version} gives it no partitions"
        )
    elif partitions:
        stdout.print(f"partitions {partitions} are the canary's, but no canary is set")
    if "shadow" in aliases:
        stdout.print(
            f"shadow also scores {policy.shadow_sample:.0%} of documents (routing policy {version})"
            if policy.shadow_sample
            else f"shadow scores nothing: routing policy {version} samples no documents for it"
        )


@registry_app.command("show")
def registry_show(
    target: Annotated[str, typer.Argument(metavar="VERSION|ALIAS", help="A version or alias.")],
) -> None:
    """Print a version's metadata, aliases and evaluation summary as JSON."""
    from triage_runtime.registry import ALIASES, UnknownVersionError

    async def run(registry: ModelRegistry) -> VersionInfo:
        version = target
        if target in ALIASES:
            resolved = await registry.resolve(target)
            if resolved is None:
                raise UnknownVersionError(f"alias {target} points at no version")
            version = resolved
        return await registry.get(version)

    info = run_with_registry(run)
    document = {
        "version": info.version,
        "aliases": list(info.aliases),
        "registered_at": info.created_at.isoformat(),
        "registered_by": info.registered_by,
        "eval": eval_summary(info.eval),
        "metadata": info.metadata,
    }
    stdout.print_json(json.dumps(document, default=str))


@registry_app.command("history")
def registry_history(
    alias: Annotated[AliasName | None, typer.Argument(help="Only this alias's moves.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many moves to show.")] = 50,
) -> None:
    """Show the latest alias moves, newest first."""
    from triage_runtime.registry import HistoryEntry

    async def run(registry: ModelRegistry) -> list[HistoryEntry]:
        return await registry.history(alias.value if alias else None, limit=limit)

    table = Table("#", "at", "alias", "action", "from", "to", "actor", "forced", "reason")
    for entry in run_with_registry(run):
        table.add_row(
            str(entry.id),
            _when(entry.at),
            entry.alias,
            entry.action,
            entry.from_version or "-",
            entry.to_version or "-",
            entry.actor,
            "yes" if entry.forced else "",
            entry.reason or "",
        )
    stdout.print(table)


@registry_app.command("register")
def registry_register(
    path: Annotated[
        Path,
        typer.Argument(help="An artifact directory (<version>/).", exists=True, file_okay=False),
    ],
    actor: ActorOption = None,
) -> None:
    """Verify an artifact, copy it into the model store and record its version (idempotent)."""

    async def run(registry: ModelRegistry) -> tuple[str, bool]:
        from triage_runtime.registry import UnknownVersionError, read_artifact

        version = str(read_artifact(path)["version"])
        try:
            await registry.get(version)
        except UnknownVersionError:
            known = False
        else:
            known = True
        return await registry.register(path, actor=actor or default_actor()), known

    version, known = run_with_registry(run, create_bucket=True)
    console.print(f"{version} {'was already registered' if known else 'registered'}")
    stdout.print(version)


@registry_app.command("rollback")
def registry_rollback(
    alias: Annotated[AliasName, typer.Argument(help="The alias to move back.")],
    reason: ReasonOption,
    actor: ActorOption = None,
) -> None:
    """Move an alias back to the version it held before its latest promotion."""

    async def run(registry: ModelRegistry) -> tuple[str | None, str]:
        after = await registry.rollback(alias.value, actor=actor or default_actor(), reason=reason)
        [entry] = await registry.history(alias.value, limit=1)
        return entry.from_version, after

    before, after = run_with_registry(run)
    stdout.print(f"{alias.value}: {before} → {after}", highlight=False)


@registry_app.command("set-alias")
def registry_set_alias(
    alias: Annotated[AliasName, typer.Argument(help="The alias to move.")],
    version: Annotated[str, typer.Argument(help="A registered version.")],
    reason: ReasonOption,
    actor: ActorOption = None,
) -> None:
    """Point ALIAS at VERSION (a forced promote): bypasses gates; prefer `triage model promote`."""

    async def run(registry: ModelRegistry) -> tuple[str | None, str | None]:
        move = await registry.move_alias(
            alias.value,
            version,
            actor=actor or default_actor(),
            action="promote",
            reason=reason,
            forced=True,
        )
        if not move.changed:
            console.print(f"{alias.value} already points at {version}; nothing recorded")
        return move.from_version, move.to_version

    before, after = run_with_registry(run)
    stdout.print(f"{alias.value}: {before} → {after}", highlight=False)


@registry_app.command("clear")
def registry_clear(
    alias: Annotated[AliasName, typer.Argument(help="The alias to clear.")],
    reason: ReasonOption,
    actor: ActorOption = None,
) -> None:
    """Point ALIAS at no version (e.g. end a canary); recorded in the history."""

    async def run(registry: ModelRegistry) -> str | None:
        move = await registry.clear(alias.value, actor=actor or default_actor(), reason=reason)
        return move.from_version

    before = run_with_registry(run)
    stdout.print(f"{alias.value}: {before} → None", highlight=False)
