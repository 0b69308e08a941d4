"""``triage policy tune`` through the CLI with its reads replaced: options, verdicts shown,
exit statuses, and the one change --apply writes. tests/integration/test_policy_tune.py runs
it on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from triage_cli import policy_cli, policy_tune
from triage_cli.exit_codes import NOT_ENOUGH_EVIDENCE
from triage_cli.main import app
from triage_runtime.outcomes.evidence import LabelEvidence
from triage_runtime.policy_store import PolicyChange
from triage_runtime.routing import RoutingPolicy
from triage_runtime.threshold_tuning import Reviewed

VERSION = "tfidf-lr-test"


def _evidence(n: int, wrong_in_ten: int, low: float, high: float) -> LabelEvidence:
    """``n`` quality samples (weight 1) spread over [low, high), ``wrong_in_ten`` of every
    ten overruled, at every confidence alike."""
    confidences = [low + i * (high - low) / n for i in range(n)]
    reviewed = [
        Reviewed(c, i % 10 >= wrong_in_ten, 1.0, sampled=True) for i, c in enumerate(confidences)
    ]
    return LabelEvidence(reviewed=reviewed, confidences=confidences * 10)


@pytest.fixture
def read(monkeypatch: pytest.MonkeyPatch) -> dict[str, LabelEvidence]:
    """The evidence the command reads, by label (set by each test); policy v4 in force."""
    evidence: dict[str, LabelEvidence] = {}

    def fake(model: str | None, start: datetime) -> Any:
        return policy_tune._Read(
            version=model or VERSION,
            labels=("billing", "legal", "technical"),
            model_thresholds={"billing": 0.7, "legal": 0.7, "technical": 0.7},
            policy=RoutingPolicy(version=4, thresholds={VERSION: {"technical": 0.8}}),
            evidence=evidence,
        )

    monkeypatch.setattr(policy_tune, "_read", fake)
    return evidence


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[tuple[PolicyChange, str, str]]:
    """Policy changes --apply writes, kept here instead of in PostgreSQL."""
    changes: list[tuple[PolicyChange, str, str]] = []

    class Store:
        async def change(self, change: PolicyChange, *, actor: str, reason: str) -> RoutingPolicy:
            changes.append((change, actor, reason))
            return change.applied_to(RoutingPolicy(version=5))

    def run(action: Callable[[Any], Awaitable[RoutingPolicy]]) -> RoutingPolicy:
        async def main() -> RoutingPolicy:
            return await action(Store())

        return asyncio.run(main())

    monkeypatch.setattr(policy_cli, "run_with_policies", run)
    return changes


def _run(*args: str) -> Any:
    return CliRunner().invoke(app, ["policy", "tune", *args])


def test_no_evidence_exits_5_and_writes_nothing(
    read: dict[str, LabelEvidence], written: list[Any]
) -> None:
    result = _run("--apply", "--reason", "weekly tuning")
    assert result.exit_code == NOT_ENOUGH_EVIDENCE, result.output
    assert "too few" in result.output and "nothing applied" in result.output
    assert written == []


def test_apply_writes_only_the_labels_that_change(
    read: dict[str, LabelEvidence], written: list[tuple[PolicyChange, str, str]]
) -> None:
    read["billing"] = _evidence(100, 3, 0.7, 1.0)  # shown to miss everywhere
    read["technical"] = _evidence(200, 0, 0.8, 1.0)  # holds from its current 0.8
    result = _run("--apply", "--reason", "weekly tuning", "--actor", "ops")
    assert result.exit_code == 0, result.output
    assert "fails" in result.output and "keep" in result.output
    [(change, actor, reason)] = written
    assert change.thresholds == {VERSION: {"billing": 1.0}}
    assert (actor, reason) == ("ops", "weekly tuning")
    assert "routing policy v5 in force" in result.output


def test_a_lower_threshold_needs_a_look_above_the_current_one(
    read: dict[str, LabelEvidence],
) -> None:
    evidence = _evidence(300, 0, 0.5, 0.7)  # all below billing's 0.7
    read["billing"] = LabelEvidence(
        reviewed=[Reviewed(r.confidence, r.correct) for r in evidence.reviewed],
        confidences=[*evidence.confidences, *[0.9] * 1000],  # routed, none sampled
    )
    result = _run("--label", "billing")
    assert result.exit_code == NOT_ENOUGH_EVIDENCE, result.output
    assert "routed unseen" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--confidence", "0.5"],
        ["--confidence", "1"],
        ["--target-precision", "0"],
        ["--label", "marketing"],
        ["--apply"],
        ["--apply", "--reason", "  "],
        ["--since", "yesterday-ish"],
    ],
)
def test_bad_options_are_usage_errors(read: dict[str, LabelEvidence], args: list[str]) -> None:
    result = _run(*args)
    assert result.exit_code == 2, result.output
