"""Live precision from decided quality samples: the computation every reader shares."""

from __future__ import annotations

import math

import pytest

from triage_runtime.outcomes.quality import LivePrecision, live_precision


def test_each_label_gets_its_share_and_wilson_interval() -> None:
    [billing, legal] = live_precision({"billing": (19, 20), "legal": (0, 3)}, confidence=0.95)
    assert (billing.label, billing.agreed, billing.decided) == ("billing", 19, 20)
    assert billing.precision == pytest.approx(0.95)
    # Wilson, z = 1.96: (p + z²/2n - z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n) for 19 of 20.
    z = 1.959964
    p, n = 0.95, 20
    expected = (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (
        1 + z * z / n
    )
    assert billing.lower == pytest.approx(expected, abs=1e-6)
    assert billing.lower == pytest.approx(0.7639, abs=1e-4)
    assert (legal.precision, legal.lower) == (0.0, 0.0)


def test_a_higher_confidence_widens_the_interval() -> None:
    [at_90] = live_precision({"billing": (95, 100)}, confidence=0.90)
    [at_99] = live_precision({"billing": (95, 100)}, confidence=0.99)
    assert at_99.lower < at_90.lower < 0.95 < at_90.upper < at_99.upper


def test_labels_without_samples_are_listed_with_nothing_known() -> None:
    rows = live_precision({"billing": (5, 5)}, confidence=0.95, labels=["legal", "billing"])
    assert [r.label for r in rows] == ["billing", "legal"]
    assert rows[1] == LivePrecision("legal", decided=0, agreed=0, lower=0.0, upper=1.0)
    assert rows[1].precision is None


@pytest.mark.parametrize(
    ("agreed", "decided", "below"),
    [
        (19, 19, True),  # 100 % of 19: the bound (0.83) is under 95 % and there are enough
        (10, 10, False),  # too few to say anything, however bad the bound
        (990, 1000, False),  # 99 %: the bound (0.982) holds the target
        (950, 1000, True),  # 95 % exactly: the bound is under it
    ],
)
def test_below_target_needs_the_lower_bound_under_it_and_enough_samples(
    agreed: int, decided: int, below: bool
) -> None:
    [one] = live_precision({"billing": (agreed, decided)}, confidence=0.95)
    assert one.below(0.95, min_samples=15) is below
