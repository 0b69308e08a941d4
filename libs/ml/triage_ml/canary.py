"""The statistics behind ``triage canary report``: is the canary model safe to promote?

The champion and the canary each score a share of live traffic over the same time window. This
module compares the two arms with four checks and turns them into a verdict:

  * ``low_confidence_rate``: share of documents with a label that went to review instead of
    being routed. A Newcombe interval (method 10, on Wilson intervals) of canary minus
    champion is compared with ``max_low_confidence_increase``.
  * ``override_rate``: share of human-reviewed items whose decided label differs from the
    predicted one, compared the same way with ``max_override_increase``.
  * ``label_psi``: population stability index (``stats.psi_by_key``, the same as drift's) of
    the predicted-label counts, champion as the expected distribution, compared with
    ``max_label_psi``.
  * ``latency_p95``: canary p95 over champion p95 of receipt-to-scored latency (linear
    interpolation between order statistics, as ``numpy.percentile`` does by default),
    compared with ``max_latency_ratio``.

A rate check fails only when the whole confidence interval lies above its limit and passes
only when the whole interval lies at or below it; otherwise there is not yet enough data to
tell. Everything here is pure apart from ``canary_png``, which writes a picture.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from triage_contracts import ModelRole
from triage_contracts.intervals import wilson_interval
from triage_ml.plots import new_figure, save_png
from triage_ml.stats import newcombe_difference, psi_by_key
from triage_ml.tables import grid

LOW_CONFIDENCE_RATE = "low_confidence_rate"
OVERRIDE_RATE = "override_rate"
LABEL_PSI = "label_psi"
LATENCY_P95 = "latency_p95"


@dataclass(frozen=True, slots=True)
class Scored:
    """One document scored in the window, by the model serving under ``role``.

    ``label`` is None when extraction failed; such a document counts towards the arm's
    ``documents`` and latency but not towards its label or low-confidence statistics.
    ``routed`` is False when the prediction's action was review (low confidence).
    """

    role: str
    version: str
    label: str | None
    routed: bool
    latency_seconds: float


@dataclass(frozen=True, slots=True)
class Reviewed:
    """A review item a human decided, with the prediction of the model serving under ``role``.

    The item counts as overridden when ``decided_label`` differs from ``predicted_label``
    (so always when there was no predicted label).
    """

    role: str
    version: str
    predicted_label: str | None
    decided_label: str


@dataclass(frozen=True, slots=True)
class CanaryThresholds:
    """Sample sizes each arm needs and the limits the canary must stay within."""

    # Per arm, for the low-confidence, label and latency checks.
    min_documents: int = 100
    # Canary rate minus champion rate, absolute.
    max_low_confidence_increase: float = 0.05
    # Per arm, for the override check.
    min_reviewed: int = 20
    max_override_increase: float = 0.10
    max_label_psi: float = 0.25
    # Canary p95 over champion p95.
    max_latency_ratio: float = 1.5
    confidence_level: float = 0.95

    def __post_init__(self) -> None:
        """Refuse settings under which the checks would mean nothing."""
        if not 0.0 < self.confidence_level < 1.0:
            raise ValueError(f"confidence_level must be in (0, 1), got {self.confidence_level}")
        if self.min_documents < 0 or self.min_reviewed < 0:
            raise ValueError("min_documents and min_reviewed must not be negative")
        if self.max_latency_ratio <= 0.0 or self.max_label_psi < 0.0:
            raise ValueError("max_latency_ratio must be positive and max_label_psi not negative")


class Outcome(enum.StrEnum):
    """What one check concluded."""

    PASS = "pass"  # noqa: S105  an outcome, not a password
    FAIL = "fail"
    INSUFFICIENT = "insufficient"


class Verdict(enum.StrEnum):
    """What to do with the canary."""

    PROMOTE = "promote"
    ROLLBACK = "rollback"
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class Check:
    """One comparison of the canary with the champion, and its outcome.

    ``difference`` is canary minus champion for rates, the PSI for ``label_psi`` and the p95
    ratio for ``latency_p95``; ``ci_low``/``ci_high`` bound the difference of rates only.
    """

    name: str
    champion: float | None
    canary: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    limit: float
    outcome: Outcome
    detail: str


@dataclass(frozen=True, slots=True)
class Arm:
    """What one role did in the window.

    ``documents`` counts every scored document, ``scored`` those with a label, and
    ``low_confidence`` those of the latter that went to review. Latencies are in seconds, over
    all ``documents``; None when there are none.
    """

    role: str
    versions: tuple[str, ...]
    documents: int
    scored: int
    low_confidence: int
    reviewed: int
    overridden: int
    label_counts: dict[str, int]
    latency_p50: float | None
    latency_p95: float | None

    def to_dict(self) -> dict[str, Any]:
        """Return the arm as JSON-ready built-in types."""
        return {
            "role": self.role,
            "versions": list(self.versions),
            "documents": self.documents,
            "scored": self.scored,
            "low_confidence": self.low_confidence,
            "reviewed": self.reviewed,
            "overridden": self.overridden,
            "label_counts": dict(self.label_counts),
            "latency_p50": self.latency_p50,
            "latency_p95": self.latency_p95,
        }


@dataclass(frozen=True, slots=True)
class CanaryReport:
    """Both arms, every check, and the verdict with the sentences that explain it."""

    champion: Arm
    canary: Arm
    checks: tuple[Check, ...]
    verdict: Verdict
    reasons: tuple[str, ...]
    thresholds: CanaryThresholds

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready built-in types (for the audit log)."""
        return {
            "champion": self.champion.to_dict(),
            "canary": self.canary.to_dict(),
            "checks": [
                {
                    "name": c.name,
                    "champion": c.champion,
                    "canary": c.canary,
                    "difference": c.difference,
                    "ci_low": c.ci_low,
                    "ci_high": c.ci_high,
                    "limit": c.limit,
                    "outcome": c.outcome.value,
                    "detail": c.detail,
                }
                for c in self.checks
            ],
            "verdict": self.verdict.value,
            "reasons": list(self.reasons),
            "thresholds": asdict(self.thresholds),
        }

    def check(self, name: str) -> Check:
        """Return the check called ``name``; KeyError if there is none."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)


# --- analysis -------------------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Return the q-th percentile (linear interpolation), or None for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q, method="linear"))


def _arm(role: str, scored: Sequence[Scored], reviewed: Sequence[Reviewed]) -> Arm:
    """Summarise the documents and review items of one role."""
    documents = [s for s in scored if s.role == role]
    labelled = [s for s in documents if s.label is not None]
    reviews = [r for r in reviewed if r.role == role]
    latencies = [s.latency_seconds for s in documents]
    counts = Counter(s.label for s in labelled if s.label is not None)
    return Arm(
        role=role,
        versions=tuple(sorted({s.version for s in documents} | {r.version for r in reviews})),
        documents=len(documents),
        scored=len(labelled),
        low_confidence=sum(1 for s in labelled if not s.routed),
        reviewed=len(reviews),
        overridden=sum(1 for r in reviews if r.decided_label != r.predicted_label),
        label_counts=dict(sorted(counts.items())),
        latency_p50=_percentile(latencies, 50.0),
        latency_p95=_percentile(latencies, 95.0),
    )


def _share(confidence: float) -> str:
    """Format a confidence level as a percentage: 0.95 -> '95%'."""
    return f"{confidence * 100:g}%"


def _too_few(what: str, champion: int, canary: int, minimum: int, unit: str) -> str:
    """Say which arms have fewer than ``minimum`` items (or none); empty if both have enough."""
    short = [
        f"{count} {unit} for the {role}"
        for role, count in (("champion", champion), ("canary", canary))
        if count < minimum or count == 0
    ]
    if not short:
        return ""
    return f"{what}: only {' and '.join(short)}; at least {max(minimum, 1)} per arm are needed"


def _rate_check(
    name: str,
    what: str,
    *,
    champion: tuple[int, int],
    canary: tuple[int, int],
    minimum: int,
    unit: str,
    limit: float,
    confidence: float,
) -> Check:
    """Compare two rates (hits, trials) by the Newcombe interval of canary minus champion.

    Rates and the interval are reported whenever both arms have trials, even when there are
    too few for the outcome to be anything but INSUFFICIENT.
    """
    (k1, n1), (k2, n2) = champion, canary
    rate1 = k1 / n1 if n1 else None
    rate2 = k2 / n2 if n2 else None
    short = _too_few(what, n1, n2, minimum, unit)
    if rate1 is None or rate2 is None:
        return Check(
            name=name,
            champion=rate1,
            canary=rate2,
            difference=None,
            ci_low=None,
            ci_high=None,
            limit=limit,
            outcome=Outcome.INSUFFICIENT,
            detail=short,
        )

    difference = rate2 - rate1
    ci_low, ci_high = newcombe_difference(k1, n1, k2, n2, confidence)
    change = (
        f"{what} {rate2:.3f} on the canary against {rate1:.3f} on the champion "
        f"({difference:+.3f}, {_share(confidence)} CI {ci_low:+.3f} to {ci_high:+.3f})"
    )
    if short:
        outcome, detail = Outcome.INSUFFICIENT, short
    elif ci_low > limit:
        outcome = Outcome.FAIL
        detail = f"{change}: even the lower bound is above the limit {limit:+.3f}"
    elif ci_high <= limit:
        outcome = Outcome.PASS
        detail = f"{change}: even the upper bound is within the limit {limit:+.3f}"
    else:
        outcome = Outcome.INSUFFICIENT
        detail = f"{change} straddles the limit {limit:+.3f}; more data is needed to decide"
    return Check(
        name=name,
        champion=rate1,
        canary=rate2,
        difference=difference,
        ci_low=ci_low,
        ci_high=ci_high,
        limit=limit,
        outcome=outcome,
        detail=detail,
    )


def _psi_check(champion: Arm, canary: Arm, thresholds: CanaryThresholds) -> Check:
    """Compare the arms' predicted-label distributions by PSI, the champion's as expected."""
    limit = thresholds.max_label_psi
    short = _too_few(
        "label distribution",
        champion.scored,
        canary.scored,
        thresholds.min_documents,
        "documents with a label",
    )
    value = None
    if champion.scored and canary.scored:
        value = psi_by_key(champion.label_counts, canary.label_counts)
    if short or value is None:
        outcome, detail = Outcome.INSUFFICIENT, short
    elif value > limit:
        outcome = Outcome.FAIL
        detail = f"label distribution shifted: PSI {value:.3f} is above the limit {limit:.3f}"
    else:
        outcome = Outcome.PASS
        detail = f"label distribution is stable: PSI {value:.3f} is within the limit {limit:.3f}"
    return Check(
        name=LABEL_PSI,
        champion=None,
        canary=None,
        difference=value,
        ci_low=None,
        ci_high=None,
        limit=limit,
        outcome=outcome,
        detail=detail,
    )


def _latency_check(champion: Arm, canary: Arm, thresholds: CanaryThresholds) -> Check:
    """Compare the arms' p95 latencies by their ratio."""
    limit = thresholds.max_latency_ratio
    old, new = champion.latency_p95, canary.latency_p95
    # A p95 of zero (or below, from clock skew) leaves the ratio undefined.
    ratio = new / old if old is not None and new is not None and old > 0.0 else None
    short = _too_few(
        "p95 latency", champion.documents, canary.documents, thresholds.min_documents, "documents"
    )
    if short:
        outcome, detail = Outcome.INSUFFICIENT, short
    elif ratio is None:
        outcome = Outcome.INSUFFICIENT
        detail = (
            f"p95 latency: the champion's p95 is {_number(old, '.3f')} s, "
            "so the canary's cannot be compared with it"
        )
    else:
        times = f"p95 latency {new:.3f} s on the canary against {old:.3f} s on the champion"
        if ratio > limit:
            outcome = Outcome.FAIL
            detail = f"{times} is {ratio:.2f}x, above the limit {limit:.2f}x"
        else:
            outcome = Outcome.PASS
            detail = f"{times} is {ratio:.2f}x, within the limit {limit:.2f}x"
    return Check(
        name=LATENCY_P95,
        champion=old,
        canary=new,
        difference=ratio,
        ci_low=None,
        ci_high=None,
        limit=limit,
        outcome=outcome,
        detail=detail,
    )


def _verdict(canary: Arm, checks: Sequence[Check]) -> tuple[Verdict, tuple[str, ...]]:
    """Decide from the checks; see ``analyse``."""
    failed = [c.detail for c in checks if c.outcome is Outcome.FAIL]
    if failed:
        return Verdict.ROLLBACK, tuple(failed)
    if canary.documents == 0:
        return Verdict.WAIT, ("the canary scored no documents in this window",)
    required = [c for c in checks if c.name != OVERRIDE_RATE]
    pending = [c.detail for c in required if c.outcome is not Outcome.PASS]
    if pending:
        return Verdict.WAIT, tuple(pending)
    reasons = ["low-confidence rate, label distribution and p95 latency all pass"]
    reasons += [
        f"not yet decisive, and not required: {c.detail}"
        for c in checks
        if c.name == OVERRIDE_RATE and c.outcome is Outcome.INSUFFICIENT
    ]
    return Verdict.PROMOTE, tuple(reasons)


def analyse(
    scored: Sequence[Scored],
    reviewed: Sequence[Reviewed],
    thresholds: CanaryThresholds = CanaryThresholds(),
) -> CanaryReport:
    """Compare the champion and canary arms and decide whether to promote, roll back or wait.

    Items of other roles (shadow, rules) are ignored. The verdict is ROLLBACK when any check
    fails; PROMOTE when the low-confidence, label and latency checks pass and the override
    check passes or lacks data (reviews trickle in slowly, so they may stop a bad canary but
    need not hold up a good one); otherwise WAIT. An empty canary arm is a WAIT.
    """
    champion = _arm(ModelRole.CHAMPION.value, scored, reviewed)
    canary = _arm(ModelRole.CANARY.value, scored, reviewed)
    confidence = thresholds.confidence_level
    checks = (
        _rate_check(
            LOW_CONFIDENCE_RATE,
            "low-confidence rate",
            champion=(champion.low_confidence, champion.scored),
            canary=(canary.low_confidence, canary.scored),
            minimum=thresholds.min_documents,
            unit="documents with a label",
            limit=thresholds.max_low_confidence_increase,
            confidence=confidence,
        ),
        _rate_check(
            OVERRIDE_RATE,
            "override rate",
            champion=(champion.overridden, champion.reviewed),
            canary=(canary.overridden, canary.reviewed),
            minimum=thresholds.min_reviewed,
            unit="reviewed items",
            limit=thresholds.max_override_increase,
            confidence=confidence,
        ),
        _psi_check(champion, canary, thresholds),
        _latency_check(champion, canary, thresholds),
    )
    verdict, reasons = _verdict(canary, checks)
    return CanaryReport(
        champion=champion,
        canary=canary,
        checks=checks,
        verdict=verdict,
        reasons=reasons,
        thresholds=thresholds,
    )


# --- presentation ---------------------------------------------------------------------------


def _number(value: float | None, spec: str, suffix: str = "") -> str:
    """Format an optional number; None shows as '-'."""
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _check_row(check: Check) -> list[str]:
    """Format one check's cells, with units that suit the kind of check."""
    ci = "-"
    if check.ci_low is not None and check.ci_high is not None:
        ci = f"{check.ci_low:+.3f} to {check.ci_high:+.3f}"
    if check.name == LATENCY_P95:
        arms = [_number(check.champion, ".3f", " s"), _number(check.canary, ".3f", " s")]
        difference = _number(check.difference, ".2f", "x")
        limit = f"{check.limit:.2f}x"
    elif check.name == LABEL_PSI:
        arms = ["-", "-"]
        difference = _number(check.difference, ".3f")
        limit = f"{check.limit:.3f}"
    else:
        arms = [_number(check.champion, ".3f"), _number(check.canary, ".3f")]
        difference = _number(check.difference, "+.3f")
        limit = f"{check.limit:+.3f}"
    return [check.name, *arms, difference, ci, limit, check.outcome.value]


def render_table(report: CanaryReport) -> str:
    """Return a plain-text report: one row per check, then the arm sizes, then the verdict."""
    header = ["check", "champion", "canary", "difference"]
    header += [f"{_share(report.thresholds.confidence_level)} CI", "limit", "outcome"]
    checks = [header, *(_check_row(c) for c in report.checks)]
    arms = [
        [
            "arm",
            "versions",
            "documents",
            "scored",
            "low_confidence",
            "reviewed",
            "overridden",
            "p50_s",
            "p95_s",
        ]
    ]
    arms += [
        [
            arm.role,
            ",".join(arm.versions) or "-",
            str(arm.documents),
            str(arm.scored),
            str(arm.low_confidence),
            str(arm.reviewed),
            str(arm.overridden),
            _number(arm.latency_p50, ".3f"),
            _number(arm.latency_p95, ".3f"),
        ]
        for arm in (report.champion, report.canary)
    ]
    verdict = f"verdict: {report.verdict.value} — {'; '.join(report.reasons)}"
    return "\n".join([*grid(checks), "", *grid(arms), "", verdict]) + "\n"


def canary_png(report: CanaryReport, path: Path, *, title: str | None = None) -> Path:
    """Draw label shares per arm (left) and low-confidence and override rates with CIs (right)."""
    from matplotlib import style
    from matplotlib.patches import Patch

    arms = (report.champion, report.canary)
    colours = ("tab:blue", "tab:orange")
    labels = sorted(set(report.champion.label_counts) | set(report.canary.label_counts))
    width = 0.4
    confidence = report.thresholds.confidence_level
    if title is None:
        title = (
            f"canary report: {report.verdict.value}\n"
            f"canary {','.join(report.canary.versions) or '-'}, "
            f"champion {','.join(report.champion.versions) or '-'}"
        )

    with style.context("default"):
        figure = new_figure()
        shares_axes, rates_axes = figure.subplots(1, 2, width_ratios=(3, 2))
        offsets = (-width / 2, width / 2)

        positions = np.arange(len(labels))
        for offset, arm, colour in zip(offsets, arms, colours, strict=True):
            total = max(arm.scored, 1)
            shares = [arm.label_counts.get(label, 0) / total for label in labels]
            shares_axes.bar(positions + offset, shares, width=width, color=colour)
        if labels:
            rotation = 0 if len(labels) <= 4 else 45 if len(labels) <= 10 else 90
            shares_axes.set_xticks(
                positions, labels=labels, rotation=rotation, ha="right" if rotation else "center"
            )
        else:
            shares_axes.set_xticks([])
            shares_axes.text(
                0.5,
                0.5,
                "no labelled documents",
                ha="center",
                va="center",
                transform=shares_axes.transAxes,
            )
        shares_axes.set_ylim(0.0, 1.0)
        shares_axes.set_ylabel("share of documents with a label")
        shares_axes.set_title("predicted labels")

        names = ("low confidence", "override")
        for offset, arm, colour in zip(offsets, arms, colours, strict=True):
            signals = ((arm.low_confidence, arm.scored), (arm.overridden, arm.reviewed))
            for position, (hits, n) in enumerate(signals):
                if n == 0:
                    rates_axes.text(
                        position + offset, 0.02, "no data", rotation=90, ha="center", fontsize=8
                    )
                    continue
                rate = hits / n
                low, high = wilson_interval(hits, n, confidence)
                rates_axes.bar(
                    position + offset,
                    rate,
                    width=width,
                    color=colour,
                    yerr=[[rate - low], [high - rate]],
                    capsize=4,
                )
        rates_axes.set_xticks(np.arange(len(names)), labels=list(names))
        rates_axes.set_xlim(-0.5, len(names) - 0.5)
        rates_axes.set_ylim(0.0, 1.05)  # room for a cap at 1
        rates_axes.set_ylabel(f"rate ({_share(confidence)} Wilson interval)")
        rates_axes.set_title("review signals")

        figure.legend(
            handles=[
                Patch(
                    color=colour,
                    label=f"{arm.role}: {arm.scored} labelled, {arm.reviewed} reviewed",
                )
                for arm, colour in zip(arms, colours, strict=True)
            ],
            loc="outside lower center",
            ncols=2,
        )
        figure.suptitle(title)
        return save_png(figure, path)
