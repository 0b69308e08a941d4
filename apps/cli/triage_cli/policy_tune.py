"""``triage policy tune``: per-label thresholds proposed from reviewers' decisions.

Reads what the model scored in the window and what people decided on it (low-confidence
reviews and quality samples), proposes for each label the lowest threshold whose precision
bound holds the target (``triage_runtime.threshold_tuning``), shows what would change, and
with ``--apply`` writes the proposals as one audited policy version. docs/model-operations.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from triage_cli.console import console, stdout
from triage_cli.database import default_actor, run_on_database
from triage_cli.replay_cli import parse_window

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from triage_runtime.outcomes.evidence import LabelEvidence
    from triage_runtime.policy_store import PolicyStore
    from triage_runtime.routing import RoutingPolicy
    from triage_runtime.threshold_tuning import LabelTuning, PrecisionBound, TuningTarget

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class _Read:
    """What tuning reads: the model, the policy in force and the window's evidence."""

    version: str
    labels: tuple[str, ...]
    model_thresholds: dict[str, float]
    policy: RoutingPolicy
    evidence: dict[str, LabelEvidence]


def policy_tune(
    model: Annotated[
        str | None,
        typer.Option(help="Model version to tune (default: the champion's)."),
    ] = None,
    since: Annotated[
        str,
        typer.Option(help="Start of the window: an age (30d, 12h) or ISO 8601 (UTC)."),
    ] = "30d",
    label: Annotated[
        list[str] | None, typer.Option(help="Tune only this label; repeatable.")
    ] = None,
    target_precision: Annotated[
        float | None,
        typer.Option(help="Precision to hold, over 0 to 1 (default: the policy's target)."),
    ] = None,
    confidence: Annotated[
        float,
        typer.Option(help="One-sided confidence the precision bound holds with, 0.5-1."),
    ] = 0.95,
    min_samples: Annotated[
        int,
        typer.Option(min=1, help="Fewest (effective) decisions above a threshold to judge it."),
    ] = 30,
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the proposals as a new policy version.")
    ] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why (required with --apply; kept with the version).")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Who acts (default: your OS user).")] = None,
) -> None:
    """Propose per-label thresholds that hold the target precision, from reviewers' decisions.

    Low-confidence reviews count for themselves, quality samples for the routed documents
    they were drawn from (1/share each). A label gets the lowest threshold whose one-sided
    Wilson lower bound on precision reaches the target; with too few decisions, none; when
    none holds and the current one is shown to miss, 1.0 (all to review). Exit status: 0
    when at least one label has a proposal (applied with --apply); 5 when no label has
    evidence enough for one (nothing applied); 1 or 2 on errors.
    """
    from triage_cli.exit_codes import NOT_ENOUGH_EVIDENCE
    from triage_runtime.outcomes.evidence import LabelEvidence
    from triage_runtime.threshold_tuning import TuningTarget, tune_label

    if target_precision is not None and not 0.0 < target_precision <= 1.0:
        raise typer.BadParameter("over 0 and at most 1", param_hint="--target-precision")
    if not 0.5 < confidence < 1.0:
        raise typer.BadParameter("over 0.5 and under 1", param_hint="--confidence")
    if apply and not (reason and reason.strip()):
        console.print("[red]--apply needs --reason: say why, it is kept with the version[/red]")
        raise typer.Exit(2)
    start, _ = parse_window(since, None)
    days = (datetime.now(UTC) - start).total_seconds() / SECONDS_PER_DAY
    read = _read(model, start)
    labels = _chosen(read.labels, label)
    target = TuningTarget(
        precision=target_precision
        if target_precision is not None
        else read.policy.target_precision,
        confidence=confidence,
        min_samples=float(min_samples),
    )
    tunings: list[LabelTuning] = []
    for name in labels:
        evidence = read.evidence.get(name, LabelEvidence())
        tunings.append(
            tune_label(
                name,
                evidence.reviewed,
                evidence.confidences,
                current=_current(read, name),
                target=target,
                days=days,
            )
        )
    stdout.print(_table(read, tunings, target, since), highlight=False)
    stdout.print(_summary(read.version, tunings, days), highlight=False, markup=False)
    unweighted = sum(read.evidence.get(n, LabelEvidence()).unweighted for n in labels)
    if unweighted:
        console.print(
            f"[yellow]{unweighted} quality sample(s) left out: no policy had a quality sample "
            "share to weight them by[/yellow]"
        )
    if all(t.proposed is None for t in tunings):
        console.print(
            f"[yellow]no label has evidence enough for a proposal (see the verdicts): nothing "
            f"{'applied' if apply else 'proposed'} (exit status {NOT_ENOUGH_EVIDENCE})[/yellow]"
        )
        raise typer.Exit(NOT_ENOUGH_EVIDENCE)
    if apply:
        _apply(read.version, tunings, actor=actor or default_actor(), reason=reason or "")


def _read(model: str | None, start: datetime) -> _Read:
    """The model's labels and own thresholds, the policy in force and the evidence."""
    from triage_cli.registry_cli import open_store
    from triage_runtime.outcomes.evidence import read_evidence
    from triage_runtime.policy_store import PolicyError, PolicyStore
    from triage_runtime.registry import ModelRegistry, RegistryError

    async def read(engine: AsyncEngine) -> _Read:
        registry = ModelRegistry(engine, open_store())
        version = model or await registry.resolve("champion")
        if version is None:
            raise PolicyError("the champion alias points at no model: give --model VERSION")
        info = await registry.get(version)
        own = info.metadata.get("thresholds") or {}
        return _Read(
            version=version,
            labels=info.labels,
            model_thresholds={str(k): float(v) for k, v in own.items()},
            policy=await PolicyStore(engine).current(),
            evidence=await read_evidence(engine, model_version=version, since=start),
        )

    return run_on_database(lambda engine: engine, read, refused=(RegistryError, PolicyError))


def _chosen(labels: tuple[str, ...], wanted: list[str] | None) -> list[str]:
    """The labels to tune: all of the model's, or those asked for (each must be one)."""
    if not wanted:
        return list(labels)
    unknown = sorted(set(wanted) - set(labels))
    if unknown:
        console.print(
            f"[red]not a label of the model: {escape(', '.join(unknown))} "
            f"(its labels: {escape(', '.join(labels))})[/red]",
            highlight=False,
        )
        raise typer.Exit(2)
    return [name for name in labels if name in wanted]


def _current(read: _Read, label: str) -> float:
    """The threshold in force: the policy's override, else the model's own (1.0 if none)."""
    override = read.policy.threshold(read.version, label)
    if override is not None:
        return override
    return read.model_thresholds.get(label, 1.0)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _errors(t: LabelTuning, *, proposed: bool) -> str:
    """Expected errors per day, and [at most] at the precision's lower bound."""
    expected = t.misrouted_per_day(proposed=proposed)
    if expected is None:
        return "?"
    worst = t.misrouted_per_day(proposed=proposed, worst=True)
    return f"{expected:.1f}" if worst is None else f"{expected:.1f} [{worst:.1f}]"


def _now_and_then(t: LabelTuning, now: str, then: str) -> str:
    """A cell's value now, and what the proposal would make it (when there is one)."""
    return now if t.proposed is None else f"{now} -> {then}"


def _precision(found: PrecisionBound | None) -> str:
    return "-" if found is None else f"{found.precision:.3f} [{found.lower:.3f}]"


def _table(read: _Read, tunings: list[LabelTuning], target: TuningTarget, since: str) -> Table:
    """One row per label; a cell with an arrow is now -> proposed."""
    table = Table(
        "label",
        "verdict",
        "threshold",
        "decisions (effective)",
        escape("precision [lower bound]"),
        "routed",
        escape("misrouted/day [at most]"),
        title=(
            f"{read.version} since {since} under policy {_policy_name(read)}: "
            f"target {target.precision:.1%} at {target.confidence:.0%} one-sided confidence"
        ),
        caption="now -> proposed; thresholds from the policy (p) or the model (m)",
    )
    for t in tunings:
        source = "p" if read.policy.threshold(read.version, t.label) is not None else "m"
        proposed = "" if t.proposed is None else f"{t.proposed:.3f}"
        table.add_row(
            escape(t.label),
            t.verdict.value,
            _now_and_then(t, f"{t.current:.3f} ({source})", proposed),
            f"{t.decisions} ({t.effective_n:.0f})",
            _now_and_then(t, _precision(t.at_current), _precision(t.at_proposed)),
            _now_and_then(t, _percent(t.share_routed_now), _percent(t.share_routed_proposed))
            + (f" of {t.documents}" if t.documents else ""),
            _now_and_then(t, _errors(t, proposed=False), _errors(t, proposed=True)),
        )
    return table


def _policy_name(read: _Read) -> str:
    return f"v{read.policy.version}" if read.policy.version is not None else "default"


def _summary(version: str, tunings: list[LabelTuning], days: float) -> str:
    """One plain line: what changes, and what it does to routing and errors."""
    counts: dict[str, int] = {}
    for t in tunings:
        counts[t.verdict.value] = counts.get(t.verdict.value, 0) + 1
    verdicts = ", ".join(f"{n} {v}" for v, n in counts.items())
    documents = sum(t.documents for t in tunings)
    now = sum(t.routed_now for t in tunings)
    after = sum(t.routed_now if t.routed_proposed is None else t.routed_proposed for t in tunings)
    line = f"{version} over {days:.1f} days: {verdicts}"
    if documents:
        line += (
            f"; routed {now / documents:.1%} -> {after / documents:.1%} of {documents} documents"
        )
    errors_now = [t.misrouted_per_day(proposed=False) for t in tunings]
    errors_after = [t.misrouted_per_day(proposed=t.proposed is not None) for t in tunings]
    if all(e is not None for e in errors_now + errors_after):
        line += (
            f"; expected misrouted per day {sum(e or 0.0 for e in errors_now):.1f} -> "
            f"{sum(e or 0.0 for e in errors_after):.1f}"
        )
    return line


def _apply(version: str, tunings: list[LabelTuning], *, actor: str, reason: str) -> None:
    """Write the changed thresholds as one policy version and print it, as ``policy set``."""
    from triage_cli.policy_cli import apply_change, describe
    from triage_runtime.policy_store import PolicyChange

    changes: dict[str, float | None] = {
        t.label: t.proposed for t in tunings if t.changes and t.proposed is not None
    }
    if not changes:
        console.print("every proposal is the threshold in force: nothing to change")
        return
    change = PolicyChange(thresholds={version: changes})

    async def write(store: PolicyStore) -> RoutingPolicy:
        return await store.change(change, actor=actor, reason=reason)

    stdout.print(describe(apply_change(write)))
