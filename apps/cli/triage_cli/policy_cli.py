"""Routing policy commands: show, history and set (every change a new, audited version);
``tune`` (triage_cli.policy_tune) proposes thresholds from reviewers' decisions.

The policy (per-label thresholds by model version, the canary's partitions, the shadow's
sample, the review SLA, the quality sample and the target precision) lives in
TRIAGE_DATABASE_URL; running classifiers pick a change up within
TRIAGE_CLASSIFIER_MODEL_REFRESH_SECONDS, without a restart. docs/model-operations.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from triage_cli.console import console, stdout
from triage_cli.database import default_actor, run_on_database

if TYPE_CHECKING:
    from triage_runtime.policy_store import PolicyChange, PolicyRecord, PolicyStore
    from triage_runtime.routing import RoutingPolicy

policy_app = typer.Typer(
    help=(
        "The routing policy: thresholds, canary partitions, shadow sample, review SLA, "
        "quality sample, target precision."
    ),
    no_args_is_help=True,
    add_completion=False,
)

T = TypeVar("T")


def run_with_policies(action: Callable[[PolicyStore], Awaitable[T]]) -> T:
    """Run ``action`` against the policy store of TRIAGE_DATABASE_URL; errors exit 1."""
    from triage_runtime.policy_store import PolicyError, PolicyStore

    return run_on_database(PolicyStore, action, refused=(PolicyError,))


def current_policy(*, required: bool = True) -> RoutingPolicy:
    """The policy in force, as the classifier reads it.

    Not ``required`` (scoring a folder offline), an unreachable database is said plainly
    and the default policy (the models' own thresholds) is used.
    """
    from sqlalchemy.exc import OperationalError

    from triage_runtime.routing import DEFAULT_POLICY

    async def read(store: PolicyStore) -> RoutingPolicy:
        return await store.current()

    try:
        return run_with_policies(read)
    except OperationalError as exc:
        if required:
            raise
        console.print(
            "[yellow]the routing policy could not be read (the database is unreachable): "
            "each model's own thresholds apply[/yellow]"
        )
        log_cause = type(exc.orig or exc).__name__
        console.print(f"[dim]({log_cause})[/dim]")
        return DEFAULT_POLICY


def parse_partitions(text: str) -> frozenset[int]:
    """``"0,3"`` as partition numbers (empty text: none)."""
    try:
        return frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise typer.BadParameter("partitions are comma-separated numbers, e.g. 0,3") from exc


def parse_thresholds(values: list[str]) -> dict[str, dict[str, float | None]]:
    """``MODEL:LABEL=VALUE`` (or ``=model`` to drop an override) by model version."""
    parsed: dict[str, dict[str, float | None]] = {}
    for value in values:
        target, sep, number = value.partition("=")
        model, colon, label = target.rpartition(":")
        if not (sep and colon and model and label):
            raise typer.BadParameter(f"{value!r}: write MODEL_VERSION:LABEL=VALUE")
        try:
            threshold = None if number == "model" else float(number)
        except ValueError as exc:
            raise typer.BadParameter(f"{value!r}: the value is a number or 'model'") from exc
        parsed.setdefault(model, {})[label] = threshold
    return parsed


def describe(policy: RoutingPolicy) -> Table:
    """A policy as a table of its parts."""
    table = Table("part", "value", title=f"routing policy {_version(policy)}")
    partitions = ", ".join(str(p) for p in sorted(policy.canary_partitions))
    table.add_row("canary partitions", partitions or "none (the champion scores all)")
    table.add_row("shadow sample", f"{policy.shadow_sample:.0%}")
    table.add_row("review due in", f"{policy.review_sla_hours:g} h")
    table.add_row("quality sample", f"{policy.quality_sample:.1%} of routed documents")
    table.add_row("target precision", f"{policy.target_precision:.1%}")
    for model, labels in sorted(policy.thresholds.items()):
        for label, value in sorted(labels.items()):
            table.add_row(f"threshold {model}:{label}", f"{value:.3f}")
    if not policy.thresholds:
        table.add_row("thresholds", "each model's own (chosen at training)")
    return table


def _version(policy: RoutingPolicy) -> str:
    return f"v{policy.version}" if policy.version is not None else "(default: none stored)"


@policy_app.command("show")
def policy_show() -> None:
    """Show the policy in force."""
    stdout.print(describe(current_policy()))


@policy_app.command("history")
def policy_history(
    limit: Annotated[int, typer.Option(min=1, help="How many versions to show.")] = 20,
) -> None:
    """List the policy's versions, newest first, with who changed it and why."""

    async def read(store: PolicyStore) -> list[PolicyRecord]:
        return await store.history(limit)

    table = Table(
        "version",
        "at",
        "actor",
        "canary",
        "shadow",
        "SLA",
        "quality",
        "target",
        "thresholds",
        "reason",
    )
    for record in run_with_policies(read):
        policy = record.policy
        overrides = sum(len(labels) for labels in policy.thresholds.values())
        table.add_row(
            str(policy.version),
            f"{record.at:%Y-%m-%d %H:%M}",
            record.actor,
            ",".join(str(p) for p in sorted(policy.canary_partitions)) or "-",
            f"{policy.shadow_sample:.0%}",
            f"{policy.review_sla_hours:g} h",
            f"{policy.quality_sample:.1%}",
            f"{policy.target_precision:.1%}",
            str(overrides),
            record.reason,
        )
    stdout.print(table)


@policy_app.command("set")
def policy_set(
    reason: Annotated[str, typer.Option(help="Why (required; kept with the version).")],
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            help="MODEL_VERSION:LABEL=VALUE (0-1), or =model to use the model's own; repeatable."
        ),
    ] = None,
    canary_partitions: Annotated[
        str | None,
        typer.Option(help="Documents-topic partitions the canary scores, e.g. 0,3 ('' for none)."),
    ] = None,
    shadow_sample: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Share of documents the shadow also scores (0-1)."),
    ] = None,
    review_sla_hours: Annotated[
        float | None, typer.Option(help="Hours after receipt a review item is due.")
    ] = None,
    quality_sample: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of confidently routed documents also sent to blind review (0-1).",
        ),
    ] = None,
    target_precision: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Precision the live measurement is held to (0-1]."),
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Who acts (default: your OS user).")] = None,
) -> None:
    """Change the policy: a new version, audited; parts not given stay as they are."""
    from triage_runtime.policy_store import PolicyChange

    change = PolicyChange(
        thresholds=parse_thresholds(threshold) if threshold else None,
        canary_partitions=(
            parse_partitions(canary_partitions) if canary_partitions is not None else None
        ),
        shadow_sample=shadow_sample,
        review_sla_hours=review_sla_hours,
        quality_sample=quality_sample,
        target_precision=target_precision,
    )
    if change == PolicyChange():
        console.print("[red]nothing to change: give at least one part of the policy[/red]")
        raise typer.Exit(2)

    async def apply(store: PolicyStore) -> RoutingPolicy:
        return await store.change(change, actor=actor or default_actor(), reason=reason)

    policy = apply_change(apply)
    stdout.print(describe(policy))


def apply_change(action: Callable[[PolicyStore], Awaitable[RoutingPolicy]]) -> RoutingPolicy:
    """Run a change and say when running classifiers take it."""
    policy = run_with_policies(action)
    console.print(
        f"routing policy {_version(policy)} in force; running classifiers take it within "
        "TRIAGE_CLASSIFIER_MODEL_REFRESH_SECONDS (10 s by default)"
    )
    return policy


def change_for(alias: str, *, partitions: str | None, sample: float | None) -> PolicyChange | None:
    """The traffic part of a promotion to ``alias``: the canary's partitions or the shadow's
    sample; None when neither is given."""
    from triage_runtime.policy_store import PolicyChange

    if partitions is not None and alias != "canary":
        raise typer.BadParameter("--partitions goes with --to canary")
    if sample is not None and alias != "shadow":
        raise typer.BadParameter("--sample goes with --to shadow")
    if partitions is None and sample is None:
        return None
    return PolicyChange(
        canary_partitions=parse_partitions(partitions) if partitions is not None else None,
        shadow_sample=sample,
    )
