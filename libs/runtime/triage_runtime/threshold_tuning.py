"""Per-label thresholds tuned from reviewers' decisions; pure, so any caller can use it.

For one label, the decisions people made on documents the model predicted as it give the
precision the label would have above each candidate threshold; the proposal is the lowest
threshold at which a one-sided Wilson lower bound shows the target. docs/model-operations.md
says what is estimated, how decisions are weighted and why the bound holds.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from triage_contracts.intervals import wilson_interval

# Candidate thresholds are the decided confidences rounded down to this many decimals, so a
# proposal reads like a threshold people set (0.874), and the decision it came from is above it.
DECIMALS = 3
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Reviewed:
    """A person's decision on a document the model predicted as the label being tuned.

    ``weight`` is how many scored documents the decision stands for: 1 for a low-confidence
    review (every such document is reviewed), 1/share for a quality sample (a random share of
    the routed documents is reviewed).
    """

    confidence: float
    correct: bool
    weight: float = 1.0
    sampled: bool = False
    """A quality sample: routed, and drawn at random for review."""


@dataclass(frozen=True, slots=True)
class TuningTarget:
    """What a threshold must show: ``precision`` with one-sided ``confidence``, from at least
    ``min_samples`` (effective) decisions."""

    precision: float
    confidence: float = 0.95
    min_samples: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 < self.precision <= 1.0:
            raise ValueError(f"the target precision is over 0 and at most 1, not {self.precision}")
        if not 0.5 < self.confidence < 1.0:
            raise ValueError(f"the confidence is over 0.5 and under 1, not {self.confidence}")
        if self.min_samples < 1:
            raise ValueError(f"at least one decision is needed, not {self.min_samples}")


@dataclass(frozen=True, slots=True)
class PrecisionBound:
    """The weighted precision of the decisions at or above ``threshold``, with its bounds."""

    threshold: float
    decisions: int
    effective_n: float
    precision: float
    lower: float
    """One-sided lower bound at the target's confidence."""
    upper: float
    """One-sided upper bound at the target's confidence."""


class Verdict(enum.StrEnum):
    """What the tuner says about one label."""

    RAISE = "raise"
    LOWER = "lower"
    KEEP = "keep"
    FAILS = "fails"
    """No threshold shows the target and the current one shows it missed: review everything."""
    NOT_SHOWN = "not shown"
    """Enough decisions, but no threshold shows the target (nor shows the current one misses)."""
    UNSEEN = "routed unseen"
    """A lower threshold holds on the reviews below the current one, but no routed document
    above it was reviewed (no quality sample), so what routes now is unmeasured: no proposal."""
    TOO_FEW = "too few"
    """Too few decisions for any threshold to show the target."""


@dataclass(frozen=True, slots=True)
class LabelTuning:
    """One label's proposal and what it would change over the window it was measured on."""

    label: str
    verdict: Verdict
    current: float
    proposed: float | None
    """None when nothing can be proposed (too few decisions, or the target not shown)."""
    decisions: int
    effective_n: float
    at_current: PrecisionBound | None
    at_proposed: PrecisionBound | None
    documents: int
    """Documents the model predicted as the label in the window (routed or reviewed)."""
    routed_now: int
    routed_proposed: int | None
    days: float

    @property
    def changes(self) -> bool:
        """Whether applying the proposal changes the threshold."""
        return self.proposed is not None and self.proposed != self.current

    @property
    def share_routed_now(self) -> float | None:
        """The share of the label's documents the current threshold routes."""
        return self.routed_now / self.documents if self.documents else None

    @property
    def share_routed_proposed(self) -> float | None:
        """The share of the label's documents the proposed threshold would route."""
        if self.routed_proposed is None or not self.documents:
            return None
        return self.routed_proposed / self.documents

    def misrouted_per_day(self, *, proposed: bool, worst: bool = False) -> float | None:
        """Expected wrongly routed documents per day at the current (or proposed) threshold:
        routed per day times 1 - precision (its lower bound when ``worst``); None if unknown."""
        routed = self.routed_proposed if proposed else self.routed_now
        found = self.at_proposed if proposed else self.at_current
        if routed is None:
            return None
        if routed == 0:
            return 0.0
        if found is None or self.days <= 0:
            return None
        precision = found.lower if worst else found.precision
        return routed * (1.0 - precision) / self.days


def _floor(value: float) -> int:
    return math.floor(value + _EPSILON)


def candidate(confidence: float) -> float:
    """The candidate threshold a decided confidence gives: rounded down to ``DECIMALS``."""
    scale = 10**DECIMALS
    return float(_floor(confidence * scale) / scale)


@dataclass(slots=True)
class _Sums:
    """Running sums over decisions: how many, their weight, right weight, squared weight.

    Kish's effective sample size is weight^2 / squares: the count when the weights are equal,
    less when they are not (a few heavy decisions carry less than as many equal ones)."""

    count: int = 0
    weight: float = 0.0
    right: float = 0.0
    squares: float = 0.0

    def add(self, r: Reviewed) -> None:
        self.count += 1
        self.weight += r.weight
        self.right += r.weight if r.correct else 0.0
        self.squares += r.weight * r.weight

    def bound(self, threshold: float, confidence: float) -> PrecisionBound | None:
        """The precision these decisions show, with its bounds (``bound`` says how)."""
        if self.count == 0 or self.weight <= 0:
            return None
        precision = self.right / self.weight
        n_eff = self.weight * self.weight / self.squares
        n = _floor(n_eff)
        two_sided = 2.0 * confidence - 1.0
        lower = wilson_interval(_floor(precision * n), n, two_sided)[0]
        upper = wilson_interval(math.ceil(precision * n - _EPSILON), n, two_sided)[1]
        return PrecisionBound(
            threshold=threshold,
            decisions=self.count,
            effective_n=n_eff,
            precision=precision,
            lower=lower,
            upper=upper,
        )


def bound(
    reviewed: Sequence[Reviewed], threshold: float, *, confidence: float
) -> PrecisionBound | None:
    """The weighted precision of the decisions at or above ``threshold``; None without any.

    The point estimate is sum(w * correct) / sum(w). The bounds are Wilson's at one-sided
    ``confidence`` for that share of the effective sample size, both rounded down to whole
    decisions: the lower bound is then never higher than the unrounded one would be, and the
    upper bound uses the rounded-up share of hits, so neither overstates what is known.
    """
    sums = _Sums()
    for r in reviewed:
        if r.confidence >= threshold:
            sums.add(r)
    return sums.bound(threshold, confidence)


def candidate_bounds(reviewed: Sequence[Reviewed], *, confidence: float) -> list[PrecisionBound]:
    """``bound`` at every candidate threshold, lowest first, in one pass over the decisions."""
    ordered = sorted(reviewed, key=lambda r: r.confidence, reverse=True)
    sums = _Sums()
    found: list[PrecisionBound] = []
    i = 0
    for threshold in sorted({candidate(r.confidence) for r in reviewed}, reverse=True):
        while i < len(ordered) and ordered[i].confidence >= threshold:
            sums.add(ordered[i])
            i += 1
        estimate = sums.bound(threshold, confidence)
        if estimate is not None:
            found.append(estimate)
    return found[::-1]


def could_show(effective_n: float, target: TuningTarget) -> bool:
    """Whether decisions of this effective size, every one correct, would show the target."""
    n = _floor(effective_n)
    if n < target.min_samples or n == 0:
        return False
    return wilson_interval(n, n, 2.0 * target.confidence - 1.0)[0] >= target.precision


def tune_label(
    label: str,
    reviewed: Sequence[Reviewed],
    confidences: Sequence[float],
    *,
    current: float,
    target: TuningTarget,
    days: float,
) -> LabelTuning:
    """Propose a threshold for ``label`` from the decisions on its predictions.

    ``confidences`` are those of every document predicted as the label in the window (for
    the share routed and the errors per day); ``days`` is the window's length.

    The candidates are the decided confidences (``candidate``); the proposal is the lowest
    whose lower bound reaches the target. A candidate is judged only when its decisions could
    show the target at all (``could_show``: their number and weights, never whether they were
    right), so a handful of decisions near the top neither passes nor blocks anything. When
    none passes, nothing is proposed, unless the current threshold is shown to miss the target
    (its upper bound below it): then 1.0, every prediction of the label to review.
    """
    at_current = bound(reviewed, current, confidence=target.confidence)
    whole = bound(reviewed, 0.0, confidence=target.confidence)
    proposed: PrecisionBound | None = None
    tested = False
    for estimate in candidate_bounds(reviewed, confidence=target.confidence):
        if not could_show(estimate.effective_n, target):
            continue
        tested = True
        if estimate.lower >= target.precision:
            proposed = estimate
            break
    value: float | None
    # Documents route now above ``current``; a lower threshold keeps routing them, so some of
    # them must have been reviewed (quality samples) for a lower one to be judged at all.
    unseen = any(c >= current for c in confidences) and not any(
        r.sampled and r.confidence >= current for r in reviewed
    )
    if proposed is not None and proposed.threshold < current and unseen:
        value, verdict = None, Verdict.UNSEEN
    elif proposed is not None:
        value = proposed.threshold
        verdict = Verdict.RAISE if proposed.threshold > current else Verdict.LOWER
        if proposed.threshold == current:
            verdict = Verdict.KEEP
    elif (
        at_current is not None
        and at_current.effective_n >= target.min_samples
        and at_current.upper < target.precision
    ):
        # Shown to miss the target where it routes now, and no threshold shows it: nothing
        # of this label should route without a person until the evidence changes.
        value = 1.0
        verdict = Verdict.FAILS if current < 1.0 else Verdict.KEEP
    else:
        value = None
        verdict = Verdict.NOT_SHOWN if tested else Verdict.TOO_FEW
    return LabelTuning(
        label=label,
        verdict=verdict,
        current=current,
        proposed=value,
        decisions=len(reviewed),
        effective_n=whole.effective_n if whole else 0.0,
        at_current=at_current,
        at_proposed=(
            None if value is None else bound(reviewed, value, confidence=target.confidence)
        ),
        documents=len(confidences),
        routed_now=sum(1 for c in confidences if c >= current),
        routed_proposed=None if value is None else sum(1 for c in confidences if c >= value),
        days=days,
    )
