"""The shared statistics (triage_ml.stats) on values worked out by hand or from published tables."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest

from triage_contracts.intervals import wilson_interval
from triage_ml import drift
from triage_ml.canary import LABEL_PSI, Scored, analyse
from triage_ml.stats import (
    calibration_bins,
    expected_calibration_error,
    newcombe_difference,
    psi,
    psi_by_key,
)

LABELS = {"invoice": 400, "contract": 300, "receipt": 200, "letter": 100}


# --- Wilson and Newcombe intervals ----------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        # Newcombe RG (1998). Two-sided confidence intervals for the single proportion:
        # comparison of seven methods. Stat Med 17:857-872; worked examples, method 3
        # (Wilson score interval without continuity correction), 95%.
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_interval_matches_published_values(
    successes: int, n: int, expected: tuple[float, float]
) -> None:
    assert wilson_interval(successes, n) == pytest.approx(expected, abs=5e-5)


def test_wilson_interval_of_8_of_10() -> None:
    # p = 0.8, z^2 = 3.8415: centre 0.8 + 0.19207 = 0.99207, margin z * sqrt(0.016 + 0.0096) =
    # 0.31362, over 1.38415: 0.4902 to 0.9433 (the textbook 95 % Wilson interval of 8/10).
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=5e-5)


def test_wilson_interval_at_zero_successes_has_the_closed_form_upper_bound() -> None:
    z = 1.959963984540054
    low, high = wilson_interval(0, 20)
    assert low == 0.0
    assert high == pytest.approx(z * z / (20 + z * z), rel=1e-12)
    assert wilson_interval(20, 20)[1] == 1.0


def test_wilson_interval_widens_with_confidence_and_knows_nothing_without_trials() -> None:
    narrow = wilson_interval(30, 100, 0.80)
    wide = wilson_interval(30, 100, 0.99)
    assert wide[0] < narrow[0] < 0.3 < narrow[1] < wide[1]
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 4, 1.0)


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "expected"),
    [
        # Newcombe RG (1998). Interval estimation for the difference between independent
        # proportions: comparison of eleven methods. Stat Med 17:873-890; examples (a)-(h),
        # method 10 (hybrid score, no continuity correction), 95%, for p1 - p2.
        (56, 70, 48, 80, (0.0524, 0.3339)),
        (9, 10, 3, 10, (0.1705, 0.8090)),
        (6, 7, 2, 7, (0.0582, 0.8062)),
        (5, 56, 0, 29, (-0.0381, 0.1926)),
        (0, 10, 0, 20, (-0.1611, 0.2775)),
        (0, 10, 0, 10, (-0.2775, 0.2775)),
        (10, 10, 0, 20, (0.6791, 1.0)),
        (10, 10, 0, 10, (0.6075, 1.0)),
    ],
)
def test_newcombe_difference_matches_newcombe_1998_method_10(
    x1: int, n1: int, x2: int, n2: int, expected: tuple[float, float]
) -> None:
    # newcombe_difference bounds its second proportion minus its first, so pass p2's counts
    # first to get the paper's p1 - p2 (e.g. 56/70 - 48/80 = 0.2, CI 0.0524 to 0.3339).
    assert newcombe_difference(x2, n2, x1, n1) == pytest.approx(expected, abs=5e-5)


def test_newcombe_difference_swapping_the_arms_mirrors_the_interval() -> None:
    low, high = newcombe_difference(48, 80, 56, 70)
    assert newcombe_difference(56, 70, 48, 80) == pytest.approx((-high, -low))
    assert low < 56 / 70 - 48 / 80 < high
    assert newcombe_difference(0, 0, 3, 10) == (-1.0, 1.0)


def test_the_threshold_bound_is_the_interval_lower_end_at_z_1_645() -> None:
    # With every trial a success the lower end is n / (n + z^2): 10 / 12.706 = 0.787, so 10
    # right out of 10 is no evidence of 95 % precision; 95 of 100 gives 0.9008.
    assert wilson_interval(10, 10, z=1.645)[0] == pytest.approx(10 / (10 + 1.645**2), rel=1e-12)
    assert wilson_interval(95, 100, z=1.645)[0] == pytest.approx(0.9008, abs=5e-5)
    assert wilson_interval(0, 0, z=1.645)[0] == 0.0
    # The one-sided 95 % bound is the lower end of the two-sided 90 % interval; 1.645 is the
    # quantile rounded to three decimals.
    for successes, n in ((10, 10), (95, 100), (3, 3), (481, 500)):
        low = wilson_interval(successes, n, 0.90)[0]
        assert wilson_interval(successes, n, z=1.645)[0] == pytest.approx(low, abs=5e-5)
    with pytest.raises(ValueError, match="z must be positive"):
        wilson_interval(1, 2, z=0.0)


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


# --- calibration ----------------------------------------------------------------------------


def test_ece_on_a_constructed_example() -> None:
    # Bin (14/15, 1]: four at 0.95, three right -> |0.75 - 0.95| = 0.2, weight 0.4.
    # Bin (9/15, 10/15]: three at 0.61 and three at 0.63 (mean 0.62), five right ->
    # |5/6 - 0.62| = 0.21333.., weight 0.6. ECE = 0.08 + 0.128 = 0.208.
    confidence = np.array([0.95] * 4 + [0.61, 0.63] * 3)
    correct = np.array([True, True, True, False] + [True] * 5 + [False])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.208)
    # One bin pools everything: |0.8 - 0.752| = 0.048.
    assert expected_calibration_error(confidence, correct, bins=1) == pytest.approx(0.048)
    assert expected_calibration_error(np.array([]), np.array([], dtype=bool)) == 0.0


def test_bins_are_closed_on_the_right() -> None:
    counts, mean_conf, accuracy = calibration_bins(
        np.array([0.0, 0.25, 0.5, 0.75, 1.0]), np.array([1, 0, 1, 0, 1]), bins=2
    )
    assert counts.tolist() == [3, 2]  # 0.5 closes the first bin, 0.0 belongs to it too
    assert mean_conf.tolist() == pytest.approx([0.25, 0.875])
    assert accuracy.tolist() == pytest.approx([2 / 3, 0.5])
    with pytest.raises(ValueError, match="at least 1"):
        calibration_bins(np.array([0.5]), np.array([1]), bins=0)
    with pytest.raises(ValueError, match="same length"):
        calibration_bins(np.array([0.5, 0.6]), np.array([1]))
