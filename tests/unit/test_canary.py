"""Canary report: the verdict rules and the report outputs (its statistics: test_stats.py)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import pytest

from triage_ml.canary import (
    LABEL_PSI,
    LATENCY_P95,
    LOW_CONFIDENCE_RATE,
    OVERRIDE_RATE,
    CanaryReport,
    CanaryThresholds,
    Outcome,
    Reviewed,
    Scored,
    Verdict,
    analyse,
    canary_png,
    render_table,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = {"invoice": 400, "contract": 300, "receipt": 200, "letter": 100}


def documents(
    role: str,
    labels: Mapping[str, int],
    *,
    low_confidence: int,
    latency: float = 0.5,
    version: str | None = None,
) -> list[Scored]:
    """Scored documents with these label counts; the first ``low_confidence`` go to review.

    Latencies spread evenly over [latency, 2 * latency), so p95 is about 1.95 * latency.
    """
    labels_in_order = [label for label, count in labels.items() for _ in range(count)]
    n = len(labels_in_order)
    return [
        Scored(
            role=role,
            version=version or f"{role}-v1",
            label=label,
            routed=i >= low_confidence,
            latency_seconds=latency * (1.0 + i / n),
        )
        for i, label in enumerate(labels_in_order)
    ]


def reviews(role: str, *, n: int, overridden: int) -> list[Reviewed]:
    """``n`` decided review items of which the first ``overridden`` changed the label."""
    return [
        Reviewed(
            role=role,
            version=f"{role}-v1",
            predicted_label="invoice",
            decided_label="contract" if i < overridden else "invoice",
        )
        for i in range(n)
    ]


def scale(labels: Mapping[str, int], factor: float) -> dict[str, int]:
    """The same label mix at another size."""
    return {label: round(count * factor) for label, count in labels.items()}


def outcomes(report: CanaryReport) -> dict[str, Outcome]:
    """Each check's outcome by name."""
    return {c.name: c.outcome for c in report.checks}


# --- analyse --------------------------------------------------------------------------------


def test_canary_equal_to_the_champion_with_large_samples_is_promoted() -> None:
    mix = scale(LABELS, 2.0)
    scored = documents("champion", mix, low_confidence=400) + documents(
        "canary", mix, low_confidence=400
    )
    reviewed = reviews("champion", n=1000, overridden=100) + reviews(
        "canary", n=1000, overridden=100
    )
    report = analyse(scored, reviewed)
    assert set(outcomes(report).values()) == {Outcome.PASS}
    assert report.verdict is Verdict.PROMOTE
    assert report.check(LOW_CONFIDENCE_RATE).difference == 0.0
    assert report.check(LATENCY_P95).difference == pytest.approx(1.0)
    assert report.canary.versions == ("canary-v1",)
    assert (report.canary.scored, report.canary.low_confidence) == (2000, 400)


def test_clearly_bad_canary_is_rolled_back_naming_the_failing_checks() -> None:
    scored = documents("champion", LABELS, low_confidence=200) + documents(
        "canary", {"invoice": 450, "letter": 50}, low_confidence=400
    )
    report = analyse(scored, [])
    failing = [c for c in report.checks if c.outcome is Outcome.FAIL]
    assert {c.name for c in failing} == {LOW_CONFIDENCE_RATE, LABEL_PSI}
    assert report.verdict is Verdict.ROLLBACK
    assert report.reasons == tuple(c.detail for c in failing)
    assert any("low-confidence rate 0.800" in reason for reason in report.reasons)
    assert any("label distribution shifted" in reason for reason in report.reasons)
    low_confidence = report.check(LOW_CONFIDENCE_RATE)
    assert low_confidence.difference == pytest.approx(0.6)
    assert low_confidence.ci_low is not None
    assert low_confidence.ci_low > 0.05


def test_small_samples_wait_and_say_how_many_are_needed() -> None:
    mix = scale(LABELS, 0.03)  # 30 documents per arm
    scored = documents("champion", mix, low_confidence=6) + documents(
        "canary", mix, low_confidence=6
    )
    report = analyse(scored, [])
    assert set(outcomes(report).values()) == {Outcome.INSUFFICIENT}
    assert report.verdict is Verdict.WAIT
    assert report.reasons
    assert all("at least 100 per arm" in reason for reason in report.reasons)
    # The numbers are still reported for a human to look at.
    assert report.check(LOW_CONFIDENCE_RATE).champion == pytest.approx(0.2)


@pytest.mark.parametrize("canary_low_confidence", [48, 56])
def test_an_interval_that_straddles_the_limit_waits_for_more_data(
    canary_low_confidence: int,
) -> None:
    # 200 documents per arm at 20% against 24% or 28%: the point difference is below or
    # above the limit of 0.05, but the interval contains it either way.
    scored = documents("champion", scale(LABELS, 0.2), low_confidence=40) + documents(
        "canary", scale(LABELS, 0.2), low_confidence=canary_low_confidence
    )
    report = analyse(scored, [])
    check = report.check(LOW_CONFIDENCE_RATE)
    assert check.difference == pytest.approx((canary_low_confidence - 40) / 200)
    assert check.outcome is Outcome.INSUFFICIENT
    assert check.ci_low is not None
    assert check.ci_high is not None
    assert check.ci_low < 0.05 < check.ci_high
    assert "straddles" in check.detail
    assert report.verdict is Verdict.WAIT


def test_too_few_reviews_do_not_block_promotion() -> None:
    scored = documents("champion", LABELS, low_confidence=100) + documents(
        "canary", LABELS, low_confidence=100
    )
    reviewed = reviews("champion", n=5, overridden=1) + reviews("canary", n=5, overridden=1)
    report = analyse(scored, reviewed)
    assert report.check(OVERRIDE_RATE).outcome is Outcome.INSUFFICIENT
    assert report.verdict is Verdict.PROMOTE
    assert any("override rate" in reason for reason in report.reasons)


def test_many_more_overrides_roll_back_even_while_other_checks_lack_data() -> None:
    reviewed = reviews("champion", n=100, overridden=5) + reviews("canary", n=100, overridden=60)
    report = analyse(documents("canary", {"invoice": 10}, low_confidence=0), reviewed)
    assert outcomes(report)[OVERRIDE_RATE] is Outcome.FAIL
    assert report.verdict is Verdict.ROLLBACK
    assert len(report.reasons) == 1
    assert "override rate" in report.reasons[0]


def test_a_slow_canary_fails_the_latency_check() -> None:
    scored = documents("champion", LABELS, low_confidence=100, latency=0.5) + documents(
        "canary", LABELS, low_confidence=100, latency=1.0
    )
    report = analyse(scored, [])
    check = report.check(LATENCY_P95)
    assert check.outcome is Outcome.FAIL
    assert check.difference == pytest.approx(2.0)
    assert report.verdict is Verdict.ROLLBACK


def test_a_zero_champion_p95_leaves_latency_undecided_without_an_error() -> None:
    scored = documents("champion", LABELS, low_confidence=100, latency=0.0) + documents(
        "canary", LABELS, low_confidence=100
    )
    report = analyse(scored, [])
    check = report.check(LATENCY_P95)
    assert check.outcome is Outcome.INSUFFICIENT
    assert check.difference is None
    assert report.verdict is Verdict.WAIT


@pytest.mark.parametrize("with_champion", [True, False])
def test_an_empty_canary_arm_waits_with_a_clear_reason(with_champion: bool) -> None:
    scored = documents("champion", LABELS, low_confidence=100) if with_champion else []
    report = analyse(scored, [])
    assert report.verdict is Verdict.WAIT
    assert report.reasons == ("the canary scored no documents in this window",)
    assert report.canary.documents == 0
    assert report.canary.latency_p95 is None


def test_other_roles_are_ignored() -> None:
    scored = documents("champion", LABELS, low_confidence=100) + documents(
        "canary", LABELS, low_confidence=100
    )
    reviewed = reviews("champion", n=30, overridden=3)
    noise = documents("shadow", {"spam": 500}, low_confidence=500, latency=9.0) + documents(
        "rules", {"spam": 10}, low_confidence=0
    )
    plain = analyse(scored, reviewed)
    noisy = analyse(scored + noise, [*reviewed, *reviews("shadow", n=30, overridden=30)])
    assert noisy.to_dict() == plain.to_dict()


def test_failed_extractions_count_as_documents_but_not_in_label_statistics() -> None:
    failed = [
        Scored(role="canary", version="canary-v1", label=None, routed=False, latency_seconds=0.7)
    ] * 50
    scored = documents("champion", LABELS, low_confidence=100) + documents(
        "canary", LABELS, low_confidence=100
    )
    report = analyse(scored + failed, [])
    assert (report.canary.documents, report.canary.scored) == (1050, 1000)
    assert report.canary.low_confidence == 100
    assert sum(report.canary.label_counts.values()) == 1000
    assert report.check(LOW_CONFIDENCE_RATE).canary == pytest.approx(0.1)


def test_arm_summary_uses_linear_percentiles_and_counts_overrides() -> None:
    scored = [
        Scored(
            role="canary",
            version="canary-v2" if i % 2 else "canary-v1",
            label="invoice",
            routed=True,
            latency_seconds=float(i),
        )
        for i in range(1, 101)
    ]
    reviewed = [
        Reviewed(role="canary", version="canary-v1", predicted_label=None, decided_label="a"),
        Reviewed(role="canary", version="canary-v1", predicted_label="a", decided_label="a"),
        Reviewed(role="canary", version="canary-v3", predicted_label="a", decided_label="b"),
    ]
    arm = analyse(scored, reviewed).canary
    # Linear interpolation between order statistics: rank 0.95 * 99 = 94.05 of 1..100.
    assert arm.latency_p95 == pytest.approx(95.05)
    assert arm.latency_p50 == pytest.approx(50.5)
    assert arm.versions == ("canary-v1", "canary-v2", "canary-v3")
    assert (arm.reviewed, arm.overridden) == (3, 2)


def test_thresholds_refuse_a_meaningless_confidence_level() -> None:
    with pytest.raises(ValueError, match="confidence_level"):
        CanaryThresholds(confidence_level=1.0)


def test_stricter_thresholds_change_the_outcome() -> None:
    scored = documents("champion", LABELS, low_confidence=100) + documents(
        "canary", LABELS, low_confidence=100, latency=0.6
    )
    assert analyse(scored, []).verdict is Verdict.PROMOTE
    strict = analyse(scored, [], CanaryThresholds(max_latency_ratio=1.1))
    assert strict.verdict is Verdict.ROLLBACK
    assert strict.thresholds.max_latency_ratio == 1.1


# --- outputs --------------------------------------------------------------------------------


def bad_report() -> CanaryReport:
    """A rollback with every kind of check filled in."""
    scored = documents("champion", LABELS, low_confidence=200) + documents(
        "canary", {"invoice": 450, "letter": 50}, low_confidence=400, latency=1.0
    )
    reviewed = reviews("champion", n=40, overridden=4) + reviews("canary", n=40, overridden=20)
    return analyse(scored, reviewed)


def test_to_dict_round_trips_through_json() -> None:
    report = bad_report()
    data = report.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["verdict"] == "rollback"
    assert [c["name"] for c in data["checks"]] == [
        LOW_CONFIDENCE_RATE,
        OVERRIDE_RATE,
        LABEL_PSI,
        LATENCY_P95,
    ]
    assert data["canary"]["label_counts"] == {"invoice": 450, "letter": 50}
    assert data["thresholds"]["max_label_psi"] == 0.25
    empty = analyse([], []).to_dict()
    assert json.loads(json.dumps(empty, allow_nan=False)) == empty


def test_render_table_shows_each_check_the_arms_and_the_verdict() -> None:
    report = bad_report()
    text = render_table(report)
    lines = text.splitlines()
    assert lines[-1] == "verdict: rollback — " + "; ".join(report.reasons)
    for name in (LOW_CONFIDENCE_RATE, OVERRIDE_RATE, LABEL_PSI, LATENCY_P95):
        [row] = [line for line in lines if line.startswith(name)]
        assert row.split()[-1] == "fail"
    assert "95% CI" in lines[0]
    [canary_row] = [line for line in lines if line.startswith("canary ")]
    assert canary_row.split()[:4] == ["canary", "canary-v1", "500", "500"]
    assert render_table(analyse([], [])).splitlines()[-1].startswith("verdict: wait — ")


def test_canary_png_is_a_valid_deterministic_png(tmp_path: Path) -> None:
    import matplotlib.image

    report = bad_report()
    first = canary_png(report, tmp_path / "one" / "canary.png")
    second = canary_png(report, tmp_path / "two" / "canary.png")
    data = first.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert matplotlib.image.imread(first).shape == (600, 800, 4)
    assert data == second.read_bytes()


def test_canary_png_of_an_empty_window_draws_without_warnings(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = canary_png(analyse([], []), tmp_path / "empty.png", title="no traffic")
    assert path.read_bytes().startswith(PNG_MAGIC)
