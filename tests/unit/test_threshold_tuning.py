"""Threshold tuning from reviewers' decisions: weights, the bound, the proposal, thin data."""

from __future__ import annotations

import random

import pytest

from triage_contracts.intervals import wilson_interval
from triage_runtime.threshold_tuning import (
    LabelTuning,
    Reviewed,
    TuningTarget,
    Verdict,
    bound,
    candidate,
    candidate_bounds,
    could_show,
    tune_label,
)

TARGET = TuningTarget(precision=0.95, confidence=0.95, min_samples=30)


def _spread(
    n: int,
    low: float,
    high: float,
    *,
    correct: bool = True,
    weight: float = 1.0,
    sampled: bool = False,
) -> list[Reviewed]:
    """``n`` decisions evenly spread over [low, high)."""
    step = (high - low) / n
    return [Reviewed(low + i * step, correct, weight, sampled) for i in range(n)]


def _tune(
    reviewed: list[Reviewed], current: float, confidences: list[float] | None = None
) -> LabelTuning:
    return tune_label(
        "billing",
        reviewed,
        confidences if confidences is not None else [r.confidence for r in reviewed],
        current=current,
        target=TARGET,
        days=10.0,
    )


def _effective(weights: list[float]) -> float:
    found = bound([Reviewed(0.9, True, w) for w in weights], 0.0, confidence=0.95)
    return found.effective_n if found else 0.0


def test_effective_size_is_n_for_equal_weights_and_less_for_unequal() -> None:
    assert _effective([1.0] * 40) == pytest.approx(40)
    assert _effective([20.0] * 40) == pytest.approx(40)
    # One heavy decision among light ones: it dominates, so the sample counts for little.
    assert _effective([1.0] * 100 + [20.0]) == pytest.approx(120**2 / 500)
    assert _effective([]) == 0.0


def test_with_equal_weights_the_bound_is_wilsons_one_sided() -> None:
    reviewed = _spread(57, 0.6, 1.0) + _spread(3, 0.6, 1.0, correct=False)
    found = bound(reviewed, 0.0, confidence=0.95)
    assert found is not None
    assert found.precision == pytest.approx(57 / 60)
    assert found.effective_n == pytest.approx(60)
    # One-sided 95 % is the lower end of the two-sided 90 % interval.
    assert (found.lower, found.upper) == pytest.approx(wilson_interval(57, 60, 0.90))
    assert found.lower < found.precision < found.upper


def test_a_quality_sample_counts_for_the_routed_documents_it_was_drawn_from() -> None:
    # 19 reviewed below the threshold, right; one quality sample (share 5 %), wrong: it stands
    # for 20 routed documents, so the routed side's errors outweigh the reviewed side.
    reviewed = [*_spread(19, 0.5, 0.7), Reviewed(0.9, False, weight=20.0)]
    found = bound(reviewed, 0.0, confidence=0.95)
    assert found is not None
    assert found.precision == pytest.approx(19 / 39)
    assert found.decisions == 20
    assert found.effective_n == pytest.approx(39**2 / 419)


def test_weights_decide_between_proposing_and_not() -> None:
    """Right low-confidence reviews cannot hide wrong quality samples (5 %: weight 20)."""
    reviews = _spread(400, 0.6, 0.7)
    samples = _spread(36, 0.7, 1.0, sampled=True) + _spread(
        4, 0.7, 1.0, correct=False, sampled=True
    )
    unweighted = _tune(reviews + samples, current=0.7)
    assert (unweighted.verdict, unweighted.proposed) == (Verdict.LOWER, 0.6)
    weighted = [Reviewed(r.confidence, r.correct, 20.0, sampled=True) for r in samples]
    tuned = _tune(reviews + weighted, current=0.7)
    assert (tuned.verdict, tuned.proposed) == (Verdict.NOT_SHOWN, None)
    whole = bound(reviews + weighted, 0.6, confidence=0.95)
    assert whole is not None
    assert whole.precision == pytest.approx((400 + 36 * 20) / (400 + 40 * 20))
    assert whole.effective_n == pytest.approx(1200**2 / (400 + 40 * 400))
    assert tuned.at_current is not None and tuned.at_current.precision == pytest.approx(0.9)


def test_overruled_confident_predictions_raise_the_threshold() -> None:
    agreed = _spread(120, 0.85, 1.0)
    overruled = _spread(30, 0.6, 0.85) + _spread(30, 0.6, 0.85, correct=False)
    reviewed = agreed + overruled
    tuned = _tune(reviewed, current=0.6)
    assert tuned.verdict is Verdict.RAISE
    assert tuned.proposed is not None and 0.8 < tuned.proposed <= 0.85
    assert tuned.at_proposed is not None and tuned.at_proposed.lower >= 0.95
    assert tuned.at_current is not None and tuned.at_current.lower < 0.95
    # The lowest that holds: every candidate below the proposal misses the bound.
    for threshold in {candidate(r.confidence) for r in reviewed}:
        if threshold < tuned.proposed:
            found = bound(reviewed, threshold, confidence=0.95)
            assert found is not None and found.lower < 0.95, threshold
    assert tuned.routed_proposed is not None and tuned.routed_proposed < tuned.routed_now


def test_thin_agreement_is_never_loosened() -> None:
    tuned = _tune(_spread(20, 0.5, 1.0), current=0.9)
    assert (tuned.verdict, tuned.proposed) == (Verdict.TOO_FEW, None)
    assert tuned.at_proposed is None and tuned.routed_proposed is None


def test_plenty_of_agreement_lowers_the_threshold_with_evidence() -> None:
    reviews, samples = _spread(240, 0.5, 0.9), _spread(60, 0.9, 1.0, sampled=True)
    tuned = _tune(reviews + samples, current=0.9)
    assert tuned.verdict is Verdict.LOWER
    assert tuned.proposed == pytest.approx(0.5)
    assert tuned.at_proposed is not None and tuned.at_proposed.lower >= 0.95


def test_no_lower_threshold_without_a_look_at_what_routes_now() -> None:
    """Reviews below the threshold alone say nothing of the documents routed above it."""
    reviews = _spread(300, 0.5, 0.9)
    routed = [0.95] * 500
    tuned = _tune(reviews, current=0.9, confidences=[r.confidence for r in reviews] + routed)
    assert (tuned.verdict, tuned.proposed) == (Verdict.UNSEEN, None)


def test_a_label_sent_wholly_to_review_can_be_routed_again() -> None:
    """At 1.0 nothing routes, so every document was reviewed: the evidence is complete."""
    tuned = _tune(_spread(300, 0.5, 1.0), current=1.0)
    assert (tuned.verdict, tuned.proposed) == (Verdict.LOWER, 0.5)


def test_one_pass_gives_what_each_threshold_alone_gives() -> None:
    rng = random.Random(7)
    reviewed = [
        Reviewed(rng.uniform(0.5, 1.0), rng.random() < 0.9, rng.choice([1.0, 50.0]))
        for _ in range(300)
    ]
    for found in candidate_bounds(reviewed, confidence=0.95):
        alone = bound(reviewed, found.threshold, confidence=0.95)
        assert alone is not None
        assert found.decisions == alone.decisions
        assert found.lower == pytest.approx(alone.lower)
        assert found.upper == pytest.approx(alone.upper)
        assert found.precision == pytest.approx(alone.precision)


def test_a_few_decisions_at_the_top_neither_pass_nor_block() -> None:
    """Too few to show the target are not judged: one wrong at the top, 100 right below."""
    reviewed = [Reviewed(0.999, False, sampled=True), *_spread(100, 0.7, 0.99, sampled=True)]
    tuned = _tune(reviewed, current=0.9)
    assert tuned.proposed == pytest.approx(0.7)
    assert tuned.at_proposed is not None and tuned.at_proposed.precision == pytest.approx(100 / 101)
    only_the_top = _tune(_spread(51, 0.9, 1.0), current=0.95)
    assert only_the_top.verdict is Verdict.TOO_FEW  # 51 right cannot show 95 % at 95 %


def test_enough_decisions_without_a_verdict_propose_nothing() -> None:
    reviewed = _spread(58, 0.6, 1.0) + _spread(2, 0.6, 1.0, correct=False)
    tuned = _tune(reviewed, current=0.6)
    assert tuned.verdict is Verdict.NOT_SHOWN
    assert tuned.proposed is None


def test_a_label_shown_to_miss_everywhere_goes_to_review() -> None:
    reviewed = _spread(70, 0.5, 1.0) + _spread(30, 0.5, 1.0, correct=False)
    tuned = _tune(reviewed, current=0.6)
    assert (tuned.verdict, tuned.proposed) == (Verdict.FAILS, 1.0)
    assert tuned.routed_proposed == 0 and tuned.misrouted_per_day(proposed=True) == 0.0


@pytest.mark.parametrize("seed", range(20))
def test_another_overruled_decision_never_lowers_the_proposal(seed: int) -> None:
    rng = random.Random(seed)
    reviewed = [
        Reviewed(rng.uniform(0.5, 1.0), rng.random() < 0.97, rng.choice([1.0, 1.0, 10.0]), True)
        for _ in range(rng.randint(40, 400))
    ]
    before = _tune(reviewed, current=0.8)
    right = [i for i, r in enumerate(reviewed) if r.correct]
    flipped = list(reviewed)
    i = rng.choice(right)
    flipped[i] = Reviewed(reviewed[i].confidence, False, reviewed[i].weight, True)
    after = _tune(flipped, current=0.8)
    if before.proposed is not None and after.proposed is not None:
        assert after.proposed >= before.proposed
    elif before.proposed is None:
        assert after.proposed in (None, 1.0)


def test_share_routed_and_errors_per_day_come_from_the_windows_documents() -> None:
    agreed = _spread(120, 0.85, 1.0)
    overruled = _spread(30, 0.6, 0.85) + _spread(30, 0.6, 0.85, correct=False)
    documents = [0.4] * 100 + [0.7] * 300 + [0.95] * 600  # 1,000 over 10 days
    tuned = _tune(agreed + overruled, current=0.6, confidences=documents)
    assert tuned.documents == 1000
    assert tuned.share_routed_now == pytest.approx(0.9)
    assert tuned.share_routed_proposed == pytest.approx(0.6)
    assert tuned.at_current is not None and tuned.at_proposed is not None
    now, proposed = tuned.at_current, tuned.at_proposed
    assert tuned.misrouted_per_day(proposed=False) == pytest.approx(900 * (1 - now.precision) / 10)
    assert tuned.misrouted_per_day(proposed=True) == pytest.approx(
        600 * (1 - proposed.precision) / 10
    )
    assert tuned.misrouted_per_day(proposed=True, worst=True) == pytest.approx(
        600 * (1 - proposed.lower) / 10
    )
    thin = _tune(_spread(20, 0.5, 1.0), current=0.9, confidences=documents)
    assert thin.misrouted_per_day(proposed=True) is None  # nothing proposed
    assert thin.misrouted_per_day(proposed=False) is not None


def test_candidates_round_down_so_their_decision_stays_above() -> None:
    assert candidate(0.8769) == 0.876
    assert candidate(0.29) == 0.29
    assert candidate(1.0) == 1.0
    found = bound([Reviewed(0.8769, True)], candidate(0.8769), confidence=0.95)
    assert found is not None and found.decisions == 1


def test_what_could_show_the_target_depends_on_size_alone() -> None:
    assert not could_show(51.9, TARGET)  # 51 perfect decisions: bound 0.9499
    assert could_show(52.0, TARGET)
    assert not could_show(52.0, TuningTarget(0.95, 0.95, min_samples=60))


@pytest.mark.parametrize(
    ("precision", "confidence", "min_samples"),
    [(0.0, 0.95, 30), (1.2, 0.95, 30), (0.95, 0.5, 30), (0.95, 1.0, 30), (0.95, 0.95, 0)],
)
def test_targets_that_mean_nothing_are_refused(
    precision: float, confidence: float, min_samples: float
) -> None:
    with pytest.raises(ValueError, match=r"target precision|confidence|decision"):
        TuningTarget(precision, confidence, min_samples)
