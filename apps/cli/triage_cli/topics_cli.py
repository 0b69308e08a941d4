"""``triage topics plan`` / ``apply``: make the cluster's topics match the declared list."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from triage_cli.console import console, stdout

if TYPE_CHECKING:
    from triage_runtime.registry import ModelRegistry
    from triage_runtime.topic_admin import Change

topics_app = typer.Typer(
    help="Topics as code: compare the cluster with the declared topics, then apply.",
    no_args_is_help=True,
)

QueueOption = Annotated[
    list[str] | None,
    typer.Option(
        "--queue",
        help="A queue that gets a routed topic (repeat for each label and other queue).",
    ),
]
ModelVersionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model-version",
        help="A registered model version whose labels each get a routed topic (repeat; for "
        "a version not yet promoted, whose labels the aliases do not name).",
    ),
]
RegistryOption = Annotated[
    bool,
    typer.Option(
        "--registry/--no-registry",
        help="Also declare a routed topic for each label of the models the champion, canary "
        "and shadow aliases point at (the registry in TRIAGE_DATABASE_URL).",
    ),
]
ReplicationOption = Annotated[
    int,
    typer.Option(
        envvar="TRIAGE_TOPICS_REPLICATION_FACTOR",
        min=1,
        help="Replicas of each partition (1 on a one-broker development stack); the minimum "
        "in-sync replicas is one fewer, at least 1.",
    ),
]


def _aliased_labels() -> set[str]:
    """The labels of every model version an alias points at: each is a queue."""
    from triage_cli.registry_cli import run_with_registry

    async def find(registry: ModelRegistry) -> set[str]:
        return {
            label for info in await registry.versions() if info.aliases for label in info.labels
        }

    return run_with_registry(find)


def apply_command(queues: Iterable[str]) -> str:
    """The ``triage topics apply`` command that creates these queues' routed topics."""
    return " ".join(["triage topics apply", *(f"--queue {q}" for q in sorted(set(queues)))])


def missing_routed_topics(queues: Iterable[str]) -> list[str]:
    """The queues whose routed topic is not on the cluster (under TRIAGE_TOPIC_PREFIX)."""
    from triage_contracts.topics import routed_topic
    from triage_runtime.settings import CommonSettings
    from triage_runtime.topic_admin import TopicAdmin

    wanted = {queue: routed_topic(queue) for queue in sorted(set(queues))}
    settings = CommonSettings()

    async def run() -> set[str]:
        async with TopicAdmin(settings, prefix=settings.topic_prefix) as admin:
            return set(await admin.describe(list(wanted.values())))

    found = asyncio.run(run())
    return [queue for queue, topic in wanted.items() if topic not in found]


def _version_labels(versions: list[str]) -> set[str]:
    """The labels of these registered model versions (an unknown one exits with status 1)."""
    from triage_cli.registry_cli import run_with_registry

    async def find(registry: ModelRegistry) -> set[str]:
        return {label for version in versions for label in (await registry.get(version)).labels}

    return run_with_registry(find)


def _plan(
    queues: list[str], *, versions: list[str], registry: bool, replication_factor: int
) -> list[Change]:
    from triage_contracts.topics import declared_topics, routed_topic
    from triage_runtime.settings import CommonSettings
    from triage_runtime.topic_admin import TopicAdmin, plan

    for queue in queues:  # a usage error, said before a server is asked anything
        try:
            routed_topic(queue)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--queue") from exc
    if versions:
        queues = [*queues, *_version_labels(versions)]
    if registry:
        queues = [*queues, *_aliased_labels()]
    declared = declared_topics(queues, replication_factor=replication_factor)
    settings = CommonSettings()

    async def run() -> list[Change]:
        async with TopicAdmin(settings, prefix=settings.topic_prefix) as admin:
            actual = await admin.describe([spec.name for spec in declared])
        return plan(declared, actual)

    return asyncio.run(run())


def _show(changes: list[Change]) -> None:
    for change in changes:
        stdout.print(escape(change.describe()), highlight=False, soft_wrap=True)
    if not changes:
        stdout.print("no difference: the cluster matches the declared topics")


@topics_app.command("plan")
def topics_plan(
    queue: QueueOption = None,
    model_version: ModelVersionOption = None,
    registry: RegistryOption = True,
    replication_factor: ReplicationOption = 3,
    check: Annotated[
        bool, typer.Option("--check", help="Exit with status 1 when there is any difference.")
    ] = False,
) -> None:
    """Show what `triage topics apply` would create or alter (changes nothing)."""
    changes = _plan(
        queue or [],
        versions=model_version or [],
        registry=registry,
        replication_factor=replication_factor,
    )
    _show(changes)
    if check and changes:
        raise typer.Exit(1)


@topics_app.command("apply")
def topics_apply(
    queue: QueueOption = None,
    model_version: ModelVersionOption = None,
    registry: RegistryOption = True,
    replication_factor: ReplicationOption = 3,
) -> None:
    """Create missing topics, add partitions and set configs to the declared values."""
    from triage_runtime.settings import CommonSettings
    from triage_runtime.topic_admin import CannotApply, TopicAdmin, TopicAdminError

    changes = _plan(
        queue or [],
        versions=model_version or [],
        registry=registry,
        replication_factor=replication_factor,
    )
    _show(changes)
    settings = CommonSettings()

    async def run() -> None:
        async with TopicAdmin(settings, prefix=settings.topic_prefix) as admin:
            await admin.apply(changes)

    try:
        asyncio.run(run())
    except TopicAdminError as exc:
        console.print(f"[red]error: {escape(str(exc))}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    left = [c for c in changes if isinstance(c, CannotApply)]
    applied = len(changes) - len(left)
    console.print(f"applied {applied} change(s)", highlight=False)
    if left:
        console.print(
            f"[yellow]{len(left)} difference(s) need an operator (see above)[/yellow]",
            highlight=False,
        )
        raise typer.Exit(1)
