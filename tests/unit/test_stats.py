"""The shared statistics (triage_ml.stats) on values worked out by hand or from published tables."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest

from triage_ml import drift
from triage_ml.canary import LABEL_PSI, Scored, analyse
from triage_ml.stats import psi, psi_by_key

LABELS = {"invoice": 400, "contract": 300, "receipt": 200, "letter": 100}


# --- population stability index -------------------------------------------------------------


def test_psi_known_value() -> None:
    # Shares after 0.5 per bin: 50.5/101 each against 75.5/101 and 25.5/101, so
    # (25/101) ln(75.5/50.5) + (-25/101) ln(25.5/50.5) = (25/101) ln(75.5/25.5).
    assert psi([50, 50], [75, 25]) == pytest.approx(25 / 101 * math.log(75.5 / 25.5), rel=1e-12)
    # The same by label.
    assert psi_by_key({"a": 50, "b": 50}, {"a": 75, "b": 25}) == psi([50, 50], [75, 25])


def test_psi_smooths_a_bin_one_side_never_saw() -> None:
    # [10, 0] and [5, 5] become 10.5/11, 0.5/11 and 5.5/11, 5.5/11:
    # (-5/11) ln(5.5/10.5) + (5/11) ln(5.5/0.5) = (5/11) ln 21.
    assert psi([10, 0], [5, 5]) == pytest.approx(5 / 11 * math.log(21), rel=1e-12)
    assert psi_by_key({"a": 10}, {"a": 5, "b": 5}) == psi([10, 0], [5, 5])
    # Finite however lopsided.
    assert np.isfinite(psi([50, 50, 0], [0, 50, 50]))


def test_psi_leaves_out_bins_empty_on_both_sides() -> None:
    assert psi([10, 0, 30], [20, 0, 20]) == psi([10, 30], [20, 20])
    assert psi_by_key({"a": 10, "b": 0, "c": 30}, {"a": 20, "c": 20}) == psi([10, 30], [20, 20])


def test_psi_is_zero_for_the_same_counts_and_about_zero_for_the_same_shares() -> None:
    assert psi([10, 30, 60, 0], [10, 30, 60, 0]) == 0.0
    assert psi_by_key(LABELS, LABELS) == 0.0
    # Same shares, other totals: the 0.5 weighs a little more on the smaller side.
    assert 0.0 < psi([100, 300, 600], [10, 30, 60]) < 0.01
    assert psi_by_key(LABELS, {k: 3 * v for k, v in LABELS.items()}) < 1e-5


def test_psi_grows_with_the_shift_and_is_symmetric() -> None:
    values = [psi([50, 50], [50 + d, 50 - d]) for d in (0, 5, 10, 20, 40)]
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert psi([100, 300, 600], [600, 300, 100]) > 1.0
    assert psi([120, 60, 20], [150, 50, 0]) == pytest.approx(psi([150, 50, 0], [120, 60, 20]))


def test_psi_refuses_what_is_not_two_histograms() -> None:
    with pytest.raises(ValueError, match="at least one count"):
        psi([0, 0], [1, 2])
    with pytest.raises(ValueError, match="at least one count"):
        psi_by_key({}, {"a": 1})
    with pytest.raises(ValueError, match="same bins"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="negative"):
        psi([1, -1], [1, 1])


def _drift_label_psi(expected: Mapping[str, int], actual: Mapping[str, int]) -> float:
    """The label PSI a drift report gives for a baseline and a window with these label counts."""
    labels = sorted(set(expected) | set(actual))

    def one_hot(counts: Mapping[str, int]) -> np.ndarray:
        return np.eye(len(labels))[[labels.index(k) for k, n in counts.items() for _ in range(n)]]

    trained = one_hot(expected)
    baseline = drift.Baseline.from_training(
        ["text"] * len(trained),
        trained,
        labels,
        np.ones((len(trained), 2)),
        predictions="label counts",
    )
    window = baseline.window()
    live = [k for k, n in actual.items() for _ in range(n)]
    window.observe(lengths=[4] * len(live), confidences=[1.0] * len(live), labels=live)
    report = drift.compare(baseline, window, drift.DriftThresholds(min_documents=1))
    value = report.signal(drift.LABEL).value
    assert value is not None
    return value


def _canary_label_psi(champion: Mapping[str, int], canary: Mapping[str, int]) -> float:
    """The label PSI a canary report gives for arms with these label counts."""
    scored = [
        Scored(role=role, version=f"{role}-v1", label=label, routed=True, latency_seconds=0.1)
        for role, counts in (("champion", champion), ("canary", canary))
        for label, n in counts.items()
        for _ in range(n)
    ]
    value = analyse(scored, []).check(LABEL_PSI).difference
    assert value is not None
    return value


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ({"billing": 120, "legal": 60, "technical": 20}, {"billing": 150, "legal": 50}),
        ({"billing": 50, "legal": 50}, {"billing": 75, "legal": 25}),
        (LABELS, {"invoice": 450, "letter": 50}),
    ],
)
def test_canary_and_drift_give_the_same_label_psi_for_the_same_counts(
    expected: dict[str, int], actual: dict[str, int]
) -> None:
    # They used to smooth differently (canary: shares floored at 1e-4; drift: 0.5 per bin), so
    # the first case gave 0.733 in the canary report and 0.411 in the drift report.
    canary = _canary_label_psi(expected, actual)
    assert canary == pytest.approx(_drift_label_psi(expected, actual), rel=1e-12)
    assert canary == pytest.approx(psi_by_key(expected, actual), rel=1e-12)
