"""A live window against its baseline: one signal each, judged by thresholds, in a report."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from triage_ml.stats import psi

if TYPE_CHECKING:
    from triage_ml.drift.baseline import Baseline
    from triage_ml.drift.window import Window

CONFIDENCE = "confidence"
LABEL = "label"
LENGTH = "length"
CENTROID = "centroid"
PSI_SIGNALS = (CONFIDENCE, LABEL, LENGTH)
SIGNALS = (*PSI_SIGNALS, CENTROID)


class Status(enum.StrEnum):
    """What a drift signal (or a whole report) concluded."""

    OK = "ok"
    DRIFT = "drift"
    INSUFFICIENT = "insufficient"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    """When a signal counts as drift, and how many documents it needs first."""

    max_psi: float = 0.2
    min_documents: int = 100
    # Centroid limit: distance_factor x spread + noise_allowance x expected_distance(n).
    distance_factor: float = 0.25
    noise_allowance: float = 3.0

    def __post_init__(self) -> None:
        """Refuse settings under which the signals would mean nothing."""
        if self.max_psi <= 0.0:
            raise ValueError(f"max_psi must be positive, got {self.max_psi}")
        if self.min_documents < 1:
            raise ValueError(f"min_documents must be at least 1, got {self.min_documents}")
        if self.distance_factor <= 0.0 or self.noise_allowance < 0.0:
            raise ValueError("distance_factor must be positive and noise_allowance not negative")


@dataclass(frozen=True, slots=True)
class Signal:
    """One drift signal: its value (PSI or distance), the limit, and what that means."""

    name: str
    value: float | None
    limit: float | None
    documents: int
    status: Status
    detail: str


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Every signal of a window against a baseline; ``reason`` says why none is available."""

    documents: int
    baseline_documents: int
    featureless: int
    signals: tuple[Signal, ...]
    thresholds: DriftThresholds
    predictions: str = ""
    reason: str = ""

    @property
    def status(self) -> Status:
        """Drift if any signal drifted; ok if all are ok; otherwise insufficient/unavailable."""
        statuses = {s.status for s in self.signals}
        if not statuses or statuses == {Status.UNAVAILABLE}:
            return Status.UNAVAILABLE
        if Status.DRIFT in statuses:
            return Status.DRIFT
        if statuses <= {Status.OK, Status.UNAVAILABLE}:
            return Status.OK
        return Status.INSUFFICIENT

    def signal(self, name: str) -> Signal:
        """Return the signal called ``name``; KeyError if there is none."""
        for s in self.signals:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready built-in types."""
        return {
            "status": self.status.value,
            "documents": self.documents,
            "baseline_documents": self.baseline_documents,
            "featureless": self.featureless,
            "reason": self.reason,
            "signals": [
                {
                    "name": s.name,
                    "value": s.value,
                    "limit": s.limit,
                    "documents": s.documents,
                    "status": s.status.value,
                    "detail": s.detail,
                }
                for s in self.signals
            ],
        }


def unavailable_report(reason: str, thresholds: DriftThresholds | None = None) -> DriftReport:
    """Return a report that says drift cannot be judged, and why."""
    return DriftReport(
        documents=0,
        baseline_documents=0,
        featureless=0,
        signals=tuple(Signal(name, None, None, 0, Status.UNAVAILABLE, reason) for name in SIGNALS),
        thresholds=thresholds or DriftThresholds(),
        reason=reason,
    )


def _judge(value: float | None, limit: float, documents: int, minimum: int) -> Status:
    """Drift above the limit, ok within it, insufficient with too few documents."""
    if value is None or documents < minimum:
        return Status.INSUFFICIENT
    return Status.DRIFT if value > limit else Status.OK


def _psi_signal(
    name: str,
    expected: np.ndarray,
    actual: np.ndarray,
    *,
    documents: int,
    thresholds: DriftThresholds,
    detail: str,
) -> Signal:
    """A PSI signal of one histogram pair."""
    value = psi(expected, actual) if documents else None
    status = _judge(value, thresholds.max_psi, documents, thresholds.min_documents)
    if status is Status.INSUFFICIENT:
        detail = f"{documents} documents, at least {thresholds.min_documents} needed; {detail}"
    return Signal(name, value, thresholds.max_psi, documents, status, detail)


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts as shares of their total (zeros for an empty histogram)."""
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))


def format_number(value: float | None, spec: str = ".3f") -> str:
    """Format an optional number; None shows as '-'."""
    return "-" if value is None else f"{value:{spec}}"


def _label_detail(baseline: Baseline, window: Window) -> str:
    """Name the label whose share moved most."""
    before, after = shares(baseline.label_counts), shares(window.label_counts)
    if not window.documents:
        return "no live predictions"
    i = int(np.argmax(np.abs(after - before)))
    return (
        f"largest change: {baseline.labels[i]} {before[i]:.1%} in the baseline, {after[i]:.1%} live"
    )


def _centroid_signal(baseline: Baseline, window: Window, thresholds: DriftThresholds) -> Signal:
    """The distance of the live centroid, judged against the spread and the sampling noise."""
    centroid = baseline.centroid
    if centroid is None:
        return Signal(
            CENTROID, None, None, 0, Status.UNAVAILABLE, "the baseline has no feature centroid"
        )
    n = window.vectors
    if n == 0:
        return Signal(
            CENTROID,
            None,
            None,
            0,
            Status.INSUFFICIENT,
            f"no feature vectors observed; at least {thresholds.min_documents} needed",
        )
    value = centroid.distance(window.vector_sum)
    limit = centroid.limit(n, thresholds)
    status = _judge(value, limit, n, thresholds.min_documents)
    detail = (
        f"limit {thresholds.distance_factor:g} x spread {centroid.spread:.3f} + "
        f"{thresholds.noise_allowance:g} x {centroid.expected_distance(n):.3f} "
        f"(chance distance of {n} training-like documents)"
    )
    if status is Status.INSUFFICIENT:
        detail = f"{n} documents, at least {thresholds.min_documents} needed; {detail}"
    return Signal(CENTROID, value, limit, n, status, detail)


def compare(
    baseline: Baseline, window: Window, thresholds: DriftThresholds | None = None
) -> DriftReport:
    """Compare a live window with the baseline it was counted against."""
    thresholds = thresholds or DriftThresholds()
    if (
        window.labels != baseline.labels
        or window.confidence_edges != baseline.confidence_edges
        or window.length_edges != baseline.length_edges
    ):
        raise ValueError("the window was not counted against this baseline")
    n = window.documents
    live_confidence = format_number(window.confidence_sum / n if n else None)
    live_length = format_number(window.length_sum / n if n else None, ".0f")
    signals = (
        _psi_signal(
            CONFIDENCE,
            baseline.confidence_counts,
            window.confidence_counts,
            documents=n,
            thresholds=thresholds,
            detail=f"mean confidence {baseline.confidence_mean:.3f} in the baseline, "
            f"{live_confidence} live",
        ),
        _psi_signal(
            LABEL,
            baseline.label_counts,
            window.label_counts,
            documents=n,
            thresholds=thresholds,
            detail=_label_detail(baseline, window),
        ),
        _psi_signal(
            LENGTH,
            baseline.length_counts,
            window.length_counts,
            documents=n,
            thresholds=thresholds,
            detail=f"mean length {baseline.length_mean:.0f} characters in the baseline, "
            f"{live_length} live",
        ),
        _centroid_signal(baseline, window, thresholds),
    )
    return DriftReport(
        documents=n,
        baseline_documents=baseline.documents,
        featureless=window.featureless,
        signals=signals,
        thresholds=thresholds,
        predictions=baseline.predictions,
    )
