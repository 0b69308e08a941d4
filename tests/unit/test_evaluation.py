"""Evaluation metrics, promotion gates and evaluation pictures, on hand-computed small cases."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from triage_contracts import Action
from triage_ml.evaluation import (
    ClassReport,
    EvalReport,
    GateConfig,
    check_gates,
    class_ece,
    evaluate,
    percentile_ms,
    prediction_rows,
    render_confusion,
    render_table,
)
from triage_ml.model import LoadedModel

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NO_THRESHOLDS = {"a": 0.0, "b": 0.0, "c": 0.0}


def one_hot_ish(predicted: Sequence[int], k: int, confidence: float = 0.8) -> np.ndarray:
    """Rows whose top class is ``predicted`` with ``confidence``, the rest spread evenly."""
    rows = np.full((len(predicted), k), (1.0 - confidence) / (k - 1))
    rows[np.arange(len(predicted)), list(predicted)] = confidence
    return rows


def two_class(
    confidences: Sequence[float], correct: Sequence[bool]
) -> tuple[list[str], np.ndarray]:
    """Two-label rows predicting "a" at each confidence; the truth is "a" when correct."""
    conf = np.asarray(confidences, dtype=np.float64)
    truth = ["a" if ok else "b" for ok in correct]
    return truth, np.column_stack([conf, 1.0 - conf])


# --- classification metrics -------------------------------------------------------------


def test_perfect_predictions() -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    report = evaluate(
        truth=["a", "b", "a", "b"],
        probabilities=probabilities,
        labels=["a", "b"],
        thresholds={"a": 0.5, "b": 0.5},
    )
    assert report.n == 4
    assert report.macro_f1 == 1.0
    assert report.accuracy == 1.0
    assert all(c.precision == c.recall == c.f1 == 1.0 for c in report.per_class)
    assert [c.support for c in report.per_class] == [2, 2]
    # Every bin is fully correct, so ECE is 1 - mean confidence = 1 - 0.75.
    assert report.ece == pytest.approx(0.25)
    assert report.confusion == ((2, 0), (0, 2))
    assert report.coverage == 1.0
    assert report.routed_precision == 1.0
    assert report.coverage_at_target == 1.0


def test_known_confusion_matrix_and_per_class_metrics() -> None:
    # truth a a a b b c, predicted a a b b c c
    report = evaluate(
        truth=["a", "a", "a", "b", "b", "c"],
        probabilities=one_hot_ish([0, 0, 1, 1, 2, 2], 3),
        labels=["a", "b", "c"],
        thresholds=NO_THRESHOLDS,
    )
    assert report.confusion == ((2, 1, 0), (0, 1, 1), (0, 0, 1))
    assert report.labels == ("a", "b", "c")
    a, b, c = report.per_class
    assert [x.label for x in report.per_class] == ["a", "b", "c"]
    assert (a.precision, a.recall, a.f1) == pytest.approx((1.0, 2 / 3, 0.8))
    assert (b.precision, b.recall, b.f1) == pytest.approx((0.5, 0.5, 0.5))
    assert (c.precision, c.recall, c.f1) == pytest.approx((0.5, 1.0, 2 / 3))
    assert [x.support for x in report.per_class] == [3, 2, 1]
    assert report.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report.accuracy == pytest.approx(4 / 6)

    from sklearn.metrics import f1_score

    sklearn_macro = f1_score(
        ["a", "a", "a", "b", "b", "c"], ["a", "a", "b", "b", "c", "c"], average="macro"
    )
    assert report.macro_f1 == pytest.approx(sklearn_macro)


def test_unknown_truth_labels_count_as_wrong_and_as_a_class_with_f1_zero() -> None:
    # The third document's true label "zzz" is not a model label; it is predicted "a".
    report = evaluate(
        truth=["a", "b", "zzz"],
        probabilities=one_hot_ish([0, 1, 0], 2),
        labels=["a", "b"],
        thresholds={"a": 0.5, "b": 0.5},
    )
    assert report.n == 3
    assert report.accuracy == pytest.approx(2 / 3)
    assert report.confusion == ((1, 0), (0, 1))  # rows are model labels only
    a, b, zzz = report.per_class
    assert (a.precision, a.recall, a.support) == (0.5, 1.0, 1)
    assert (b.precision, b.recall, b.support) == (1.0, 1.0, 1)
    assert zzz == ClassReport(label="zzz", precision=0.0, recall=0.0, f1=0.0, support=1)
    assert report.macro_f1 == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    assert report.routed_precision == pytest.approx(2 / 3)


def test_macro_f1_counts_a_label_the_model_never_predicts() -> None:
    # truth a a b c, predicted a a b b: "c" is a model label, never predicted.
    report = evaluate(
        truth=["a", "a", "b", "c"],
        probabilities=one_hot_ish([0, 0, 1, 1], 3),
        labels=["a", "b", "c"],
        thresholds=NO_THRESHOLDS,
    )
    assert [c.f1 for c in report.per_class] == pytest.approx([1.0, 2 / 3, 0.0])
    assert report.macro_f1 == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)

    from sklearn.metrics import f1_score

    sklearn_macro = f1_score(["a", "a", "b", "c"], ["a", "a", "b", "b"], average="macro")
    assert report.macro_f1 == pytest.approx(sklearn_macro)


def test_macro_f1_leaves_out_a_model_label_the_test_set_lacks_unless_predicted() -> None:
    # "c" is neither in the truth nor predicted: a test set of some queues judges those.
    report = evaluate(
        truth=["a", "b"],
        probabilities=one_hot_ish([0, 1], 3),
        labels=["a", "b", "c"],
        thresholds=NO_THRESHOLDS,
    )
    assert report.macro_f1 == pytest.approx(1.0)
    assert report.per_class[2] == dataclasses.replace(report.per_class[2], f1=0.0, support=0)
    # Predicted, "c" is a mistake the test set can see: F1 0, counted (as scikit-learn does).
    wrong = evaluate(
        truth=["a", "b"],
        probabilities=one_hot_ish([0, 2], 3),
        labels=["a", "b", "c"],
        thresholds=NO_THRESHOLDS,
    )
    from sklearn.metrics import f1_score

    assert wrong.macro_f1 == pytest.approx(f1_score(["a", "b"], ["a", "c"], average="macro"))
    assert wrong.macro_f1 == pytest.approx(1 / 3)


def test_values_are_plain_and_the_report_round_trips_through_json() -> None:
    report = evaluate(
        truth=["a", "b", "a"],
        probabilities=one_hot_ish([0, 1, 1], 2),
        labels=["a", "b"],
        thresholds={"a": 0.5, "b": 0.9},
        latencies_s=[0.01, 0.02],
    )
    data = report.to_dict()
    for key in ("macro_f1", "accuracy", "ece", "coverage", "routed_precision"):
        assert type(data[key]) is float
    assert type(data["n"]) is int
    assert type(data["confusion"][0][0]) is int
    assert type(data["per_class"][0]["precision"]) is float
    restored = EvalReport.from_dict(json.loads(json.dumps(data)))
    assert restored == report


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="shape"):
        evaluate(
            truth=["a"],
            probabilities=np.array([[1.0]]),
            labels=["a", "b"],
            thresholds=NO_THRESHOLDS,
        )
    with pytest.raises(ValueError, match="no threshold for labels: b"):
        evaluate(
            truth=["a"],
            probabilities=np.array([[0.6, 0.4]]),
            labels=["a", "b"],
            thresholds={"a": 0.5},
        )
    with pytest.raises(ValueError, match="empty"):
        evaluate(
            truth=[], probabilities=np.zeros((0, 2)), labels=["a", "b"], thresholds=NO_THRESHOLDS
        )


# --- calibration ---------------------------------------------------------------------------


def test_ece_in_the_report_is_of_the_top_class_confidence() -> None:
    confidence = [0.95] * 4 + [0.61, 0.63] * 3
    correct = [True, True, True, False] + [True] * 5 + [False]
    truth, probabilities = two_class(confidence, correct)
    report = evaluate(
        truth=truth, probabilities=probabilities, labels=["a", "b"], thresholds={"a": 1, "b": 1}
    )
    assert report.ece == pytest.approx(0.208)


def test_ece_per_class_is_one_vs_rest_on_each_class_probability() -> None:
    # Values kept off the bin edges (multiples of 1/15).
    probabilities = np.array(
        [
            [0.70, 0.25, 0.05],  # a
            [0.70, 0.25, 0.05],  # b
            [0.05, 0.90, 0.05],  # b
            [0.05, 0.30, 0.65],  # c
        ]
    )
    truth = ["a", "b", "b", "c"]
    labels = ["a", "b", "c"]
    report = evaluate(
        truth=truth, probabilities=probabilities, labels=labels, thresholds=NO_THRESHOLDS
    )
    # a: 0.70 x2 (one is a: |0.5 - 0.7| x2), 0.05 x2 (none is: 0.05 x2) -> 0.5 / 4
    # b: 0.25 x2 (one is b: 0.25 x2), 0.90 (is b: 0.1), 0.30 (is not: 0.3) -> 0.9 / 4
    # c: 0.05 x3 (none is c: 0.15), 0.65 (is c: 0.35) -> 0.5 / 4
    expected = {"a": 0.125, "b": 0.225, "c": 0.125}
    assert {c.label: c.ece for c in report.per_class} == pytest.approx(expected)
    for label, value in expected.items():
        assert class_ece(truth, probabilities, labels, label) == pytest.approx(value)
    assert report.to_dict()["per_class"][1]["ece"] == pytest.approx(0.225)
    assert EvalReport.from_dict(report.to_dict()) == report
    # a report stored before per-class ECE was recorded still loads
    old = report.to_dict()
    for entry in old["per_class"]:
        del entry["ece"]
    assert all(c.ece is None for c in EvalReport.from_dict(old).per_class)


# --- routing -------------------------------------------------------------------------------


def test_prediction_rows_decide_as_served() -> None:
    rows = prediction_rows(
        truth=["a", "b", "b"],
        probabilities=np.array([[0.8000004, 0.1999996], [0.6, 0.4], [0.3, 0.7]]),
        labels=["a", "b"],
        thresholds={"a": 0.8, "b": 0.75},
    )
    assert rows == [
        {
            "true_label": "a",
            "predicted_label": "a",
            "confidence": 0.8,
            "threshold": 0.8,
            "action": "route",
            "correct": True,
        },
        {
            "true_label": "b",
            "predicted_label": "a",
            "confidence": 0.6,
            "threshold": 0.8,
            "action": "review",
            "correct": False,
        },
        {
            "true_label": "b",
            "predicted_label": "b",
            "confidence": 0.7,
            "threshold": 0.75,
            "action": "review",
            "correct": True,
        },
    ]


def test_coverage_and_routed_precision_follow_per_label_thresholds() -> None:
    probabilities = np.array(
        [
            [0.9, 0.1],  # a, 0.9 >= 0.8: routed, right
            [0.75, 0.25],  # a, 0.75 < 0.8: review
            [0.2, 0.8],  # b, 0.8 >= 0.6: routed, right
            [0.35, 0.65],  # b, 0.65 >= 0.6: routed, wrong (truth a)
            [0.45, 0.55],  # b, 0.55 < 0.6: review
            [0.8, 0.2],  # a, exactly at its threshold: routed, right
        ]
    )
    report = evaluate(
        truth=["a", "a", "b", "a", "b", "a"],
        probabilities=probabilities,
        labels=["a", "b"],
        thresholds={"a": 0.8, "b": 0.6},
    )
    assert report.coverage == pytest.approx(4 / 6)
    assert report.routed_precision == pytest.approx(3 / 4)


def test_nothing_routed_gives_zero_precision_not_nan() -> None:
    report = evaluate(
        truth=["a", "b"],
        probabilities=one_hot_ish([0, 1], 2),
        labels=["a", "b"],
        thresholds={"a": 1.0, "b": 1.0},
    )
    assert report.coverage == 0.0
    assert report.routed_precision == 0.0


def test_routing_matches_the_served_decision() -> None:
    class Fixed:
        def __init__(self, rows: np.ndarray) -> None:
            self.rows = rows

        def predict_proba(self, texts: list[str]) -> np.ndarray:
            return self.rows

    # 0.79999996 is served as 0.8 (rounded to six decimals), so it is routed at threshold 0.8.
    rows = np.array([[0.79999996, 0.20000004], [0.7999994, 0.2000006], [0.3, 0.7]])
    model = LoadedModel(
        version="v",
        labels=("a", "b"),
        thresholds={"a": 0.8, "b": 0.7},
        metadata={},
        _pipeline=Fixed(rows),
    )
    texts = ["x", "y", "z"]
    served = [p.action is Action.ROUTE for p in model.predict(texts)]
    assert served == [True, False, True]
    report = evaluate(
        truth=["a", "a", "b"],
        probabilities=model.predict_proba(texts),
        labels=model.labels,
        thresholds=model.thresholds,
    )
    assert report.coverage == pytest.approx(sum(served) / 3)


def test_coverage_at_target_on_a_constructed_ranking() -> None:
    confidence = [0.99, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.55, 0.5]
    correct = [True, True, True, False, True, True, False, False, True]
    # Precision of the top k: 1, 1, 1, .75, .8, .833, .714, .625, .667.
    truth, probabilities = two_class(confidence, correct)

    def at(target: float) -> float:
        return evaluate(
            truth=truth,
            probabilities=probabilities,
            labels=["a", "b"],
            thresholds={"a": 1.0, "b": 1.0},
            target_precision=target,
        ).coverage_at_target

    assert at(0.8) == pytest.approx(6 / 9)
    assert at(0.95) == pytest.approx(3 / 9)
    assert at(1.0) == pytest.approx(3 / 9)
    assert at(0.6) == pytest.approx(1.0)


def test_coverage_at_target_routes_ties_together_and_can_be_zero() -> None:
    # A cut at 0.8 routes both 0.8 documents, so precision 2/3 there; only 0.9 alone qualifies.
    truth, probabilities = two_class([0.9, 0.8, 0.8], [True, True, False])
    report = evaluate(
        truth=truth,
        probabilities=probabilities,
        labels=["a", "b"],
        thresholds={"a": 1.0, "b": 1.0},
        target_precision=0.75,
    )
    assert report.coverage_at_target == pytest.approx(1 / 3)

    truth, probabilities = two_class([0.9, 0.8], [False, True])
    report = evaluate(
        truth=truth, probabilities=probabilities, labels=["a", "b"], thresholds={"a": 1, "b": 1}
    )
    assert report.coverage_at_target == 0.0


# --- latency -------------------------------------------------------------------------------


def test_latency_percentiles() -> None:
    latencies = [0.010, 0.020, 0.030, 0.040, 0.100]
    assert percentile_ms(latencies, 50) == pytest.approx(30.0)
    assert percentile_ms(latencies, 95) == pytest.approx(88.0)  # 40 + 0.8 * (100 - 40)
    assert percentile_ms(latencies, 0) == pytest.approx(10.0)
    assert percentile_ms(latencies, 100) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no latencies"):
        percentile_ms([], 50)
    with pytest.raises(ValueError, match="percentile"):
        percentile_ms(latencies, 101)

    def report_with(latencies_s: Sequence[float] | None) -> EvalReport:
        return evaluate(
            truth=["a", "b"],
            probabilities=one_hot_ish([0, 1], 2),
            labels=["a", "b"],
            thresholds={"a": 0.5, "b": 0.5},
            latencies_s=latencies_s,
        )

    report = report_with(latencies)
    assert report.latency_p50_ms == pytest.approx(30.0)
    assert report.latency_p95_ms == pytest.approx(88.0)
    no_latencies: tuple[list[float] | None, ...] = (None, [])
    for missing in no_latencies:
        report = report_with(missing)
        assert report.latency_p50_ms is None
        assert report.latency_p95_ms is None


# --- gates ---------------------------------------------------------------------------------


def good_report(**changes: float) -> EvalReport:
    """A report that passes the default gates; ``changes`` replace metrics."""
    base = EvalReport(
        n=100,
        macro_f1=0.91,
        accuracy=0.92,
        per_class=(),
        ece=0.03,
        coverage=0.68,
        routed_precision=0.97,
        target_precision=0.95,
        coverage_at_target=0.7,
        latency_p50_ms=None,
        latency_p95_ms=None,
        confusion=(),
        labels=(),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_gates_pass_without_a_champion() -> None:
    result = check_gates(good_report(), champion=None, config=GateConfig())
    assert result.passed
    assert result.failures == ()


def test_gates_pass_at_the_limits_and_within_tolerance() -> None:
    at_limits = good_report(macro_f1=0.85, ece=0.08, coverage=0.5, routed_precision=0.95)
    assert check_gates(at_limits, champion=None, config=GateConfig()).passed
    champion = good_report()
    candidate = good_report(macro_f1=0.90, coverage=0.67, routed_precision=0.99)  # 0.01 drops
    assert check_gates(candidate, champion=champion, config=GateConfig()).passed


def test_absolute_gate_failures() -> None:
    candidate = good_report(macro_f1=0.812, ece=0.191, coverage=0.4, routed_precision=0.9)
    result = check_gates(candidate, champion=None, config=GateConfig())
    assert not result.passed
    assert result.failures == (
        "macro_f1 0.812 < 0.850 (minimum)",
        "ece 0.191 > 0.150 (maximum)",
        "coverage 0.400 < 0.500 (minimum)",
        "routed_precision 0.900 < 0.950 (minimum)",
    )


def test_regression_gate_failures() -> None:
    champion = good_report(macro_f1=0.93, coverage=0.68, routed_precision=0.97)
    candidate = good_report(macro_f1=0.90, coverage=0.61, routed_precision=0.97)
    result = check_gates(candidate, champion=champion, config=GateConfig())
    assert not result.passed
    assert result.failures == (
        "macro_f1 0.900 regressed by 0.030 against champion 0.930 (tolerance 0.010)",
        "coverage 0.610 regressed by 0.070 against champion 0.680 (tolerance 0.010)",
    )
    # Without a champion the same candidate meets every absolute limit.
    assert check_gates(candidate, champion=None, config=GateConfig()).passed
    looser = GateConfig(max_regression=0.1)
    assert check_gates(candidate, champion=champion, config=looser).passed


# --- table ---------------------------------------------------------------------------------


def test_render_table() -> None:
    report = evaluate(
        truth=["a", "a", "b"],
        probabilities=one_hot_ish([0, 1, 1], 2),
        labels=["a", "b"],
        thresholds={"a": 0.5, "b": 0.5},
        latencies_s=[0.012],
    )
    table = render_table(report)
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "candidate"]
    assert "macro_f1" in table
    assert "coverage_at_target (0.95)" in table
    assert any(line.split() == ["latency_p50_ms", "12.0"] for line in lines)
    [a_row] = [line.split() for line in lines if line.startswith("a ")]
    assert a_row == ["a", "1.000", "0.500", "0.667", "2", f"{report.per_class[0].ece:.3f}"]
    assert "champion" not in table

    champion = dataclasses.replace(report, macro_f1=report.macro_f1 - 0.02, latency_p50_ms=None)
    compared = render_table(report, champion=champion).splitlines()
    assert compared[0].split() == ["metric", "candidate", "champion", "delta"]
    [macro] = [line.split() for line in compared if line.startswith("macro_f1")]
    assert macro[3] == "+0.020"
    [latency] = [line.split() for line in compared if line.startswith("latency_p50_ms")]
    assert latency == ["latency_p50_ms", "12.0", "-", "-"]
    [n] = [line.split() for line in compared if line.startswith("n ")]
    assert n == ["n", "3", "3", "+0"]


def test_render_confusion() -> None:
    # truth a a a b b c zzz, predicted a a b b c c a
    report = evaluate(
        truth=["a", "a", "a", "b", "b", "c", "zzz"],
        probabilities=one_hot_ish([0, 0, 1, 1, 2, 2, 0], 3),
        labels=["a", "b", "c"],
        thresholds=NO_THRESHOLDS,
    )
    assert render_confusion(report).splitlines() == [
        "true \\ predicted  a  b  c  total",
        "----------------  -  -  -  -----",
        "a                 2  1  0      3",
        "b                 0  1  1      2",
        "c                 0  0  1      1",
        "total             2  2  2      6",
        "(not shown: 1 document of a queue the model lacks)",
    ]


# --- pictures ------------------------------------------------------------------------------


def picture_inputs() -> tuple[list[str], np.ndarray, list[str]]:
    """A seeded three-label test set with some confusion and an unknown true label."""
    rng = np.random.default_rng(7)
    labels = ["billing", "legal", "technical"]
    truth_idx = rng.integers(0, 3, 200)
    logits = rng.normal(size=(200, 3))
    logits[np.arange(200), truth_idx] += 2.0
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = [labels[i] for i in truth_idx]
    truth[0] = "spam"
    return truth, probabilities, labels


def draw_both(out: Path) -> tuple[Path, Path, Path]:
    """Write the confusion matrix, the calibration picture and one label's into ``out``."""
    from triage_ml.plots import calibration_png, class_calibration_png, confusion_matrix_png

    truth, probabilities, labels = picture_inputs()
    report = evaluate(
        truth=truth,
        probabilities=probabilities,
        labels=labels,
        thresholds=dict.fromkeys(labels, 0.7),
    )
    confusion = confusion_matrix_png(report, out / "confusion.png", title="candidate on holdout")
    calibration = calibration_png(
        truth, probabilities, labels, out / "nested" / "calibration.png", title="candidate"
    )
    legal = class_calibration_png(
        truth, probabilities, labels, "legal", out / "calibration-legal.png", title="candidate"
    )
    return confusion, calibration, legal


def test_pictures_are_valid_deterministic_pngs(tmp_path: Path) -> None:
    import matplotlib.image

    first = draw_both(tmp_path / "one")
    second = draw_both(tmp_path / "two")
    for path, again in zip(first, second, strict=True):
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert matplotlib.image.imread(path).shape == (600, 800, 4)
        assert data == again.read_bytes()
        assert b"matplotlib" not in data  # no Software (version) entry


def test_importing_plots_does_not_import_matplotlib() -> None:
    code = "import sys, triage_ml.plots; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
