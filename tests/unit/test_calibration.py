"""Calibrators chosen by held-out measurement, and training's fit counts and served model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.helpers import small_examples
from triage_ml import calibration
from triage_ml import model as model_lib

FOLDS = 5


def _folds(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % FOLDS)


def _binary(scores: np.ndarray, p_true: np.ndarray, rng: np.random.Generator) -> tuple[Any, Any]:
    """Logits of a binary model scoring ``scores``, and labels drawn with P(class 1)."""
    y = (rng.random(len(scores)) < p_true).astype(np.int64)
    return calibration.as_logits(scores), y


def test_temperature_is_chosen_when_the_scores_are_softmax_logits_too_sharp() -> None:
    rng = np.random.default_rng(0)
    n, k, true_t = 4000, 4, 2.5
    logits = rng.normal(0.0, 4.0, size=(n, k))
    p = np.exp(logits / true_t)
    p /= p.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    choice = calibration.choose_calibrator(logits, y, _folds(n, rng))
    assert choice.method == "temperature"
    assert choice.calibrator.temperature_ == pytest.approx(true_t, rel=0.1)  # type: ignore[attr-defined]
    figures = choice.measurements
    assert figures["temperature"]["log_loss"] < figures["sigmoid"]["log_loss"]
    assert figures["temperature"]["log_loss"] < figures["isotonic"]["log_loss"]


def test_temperature_never_sharpens_beyond_its_bound_on_separable_scores() -> None:
    # Every document's true class has the top logit: log-loss keeps falling as T goes to 0.
    rng = np.random.default_rng(3)
    n, k = 500, 3
    y = rng.integers(0, k, size=n)
    logits = rng.normal(0.0, 0.3, size=(n, k))
    logits[np.arange(n), y] += 2.0
    fitted = calibration.TemperatureCalibrator().fit(logits, y)
    assert fitted.temperature_ == pytest.approx(calibration.MIN_TEMPERATURE, rel=1e-3)
    # A document with no known word scores the intercepts alone: nearly flat logits.
    flat = fitted.predict_proba(np.array([[0.3, 0.0, 0.0]]))
    assert flat.max() < 0.6


def test_a_model_trained_on_separable_data_is_not_sure_of_a_document_with_no_known_word() -> None:
    # The canary integration test's corrupted model: three fifths of the examples say billing.
    examples = [
        model_lib.Example(text=e.text, label="billing" if e.label == "legal" else e.label)
        for e in small_examples()
    ] + [model_lib.Example(text=f"notary seal stamp {i}", label="legal") for i in range(10)]
    pipeline, *_ = model_lib.train(examples, seed=1)
    vague = pipeline.predict_proba(["hello, any news about my message number 7?"])
    assert vague.max() < 0.8


def test_sigmoid_is_chosen_when_the_scores_are_off_by_an_offset() -> None:
    # P(class 1 | s) = sigmoid(0.8 s + 1.5): temperature cannot shift the centre; Platt can.
    rng = np.random.default_rng(1)
    scores = rng.normal(0.0, 3.0, size=4000)
    logits, y = _binary(scores, 1.0 / (1.0 + np.exp(-(0.8 * scores + 1.5))), rng)
    choice = calibration.choose_calibrator(logits, y, _folds(len(y), rng))
    assert choice.method == "sigmoid"


def test_isotonic_is_chosen_when_the_truth_is_a_step() -> None:
    # Confidence jumps from 0.15 to 0.9 at a score of 1: no sigmoid bends like that.
    rng = np.random.default_rng(2)
    scores = rng.normal(0.0, 3.0, size=4000)
    logits, y = _binary(scores, np.where(scores < 1.0, 0.15, 0.9), rng)
    choice = calibration.choose_calibrator(logits, y, _folds(len(y), rng))
    assert choice.method == "isotonic"
    assert choice.measurements["isotonic"]["ece"] < choice.measurements["temperature"]["ece"]


def test_each_fold_is_measured_by_calibrators_that_never_saw_it() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0.0, 3.0, size=(1000, 3))
    y = logits.argmax(axis=1)
    fold_of = _folds(len(y), rng)
    choice = calibration.choose_calibrator(logits, y, fold_of)
    # Relabel fold 0 at random: its probabilities do not move, every other fold's do.
    scrambled = np.where(fold_of == 0, rng.integers(0, 3, size=len(y)), y)
    again = calibration.cross_fitted(choice.method, logits, scrambled, fold_of)
    held = fold_of == 0
    np.testing.assert_allclose(again[held], choice.probabilities[held])
    assert not np.allclose(again[~held], choice.probabilities[~held])


@pytest.mark.parametrize("method", calibration.CALIBRATORS)
def test_every_calibrator_gives_probabilities_that_sum_to_one(method: str) -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(0.0, 5.0, size=(600, 3))
    y = rng.integers(0, 3, size=600)
    proba = calibration.make_calibrator(method).fit(logits, y).predict_proba(logits * 3)
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_an_unknown_calibrator_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown calibrator 'beta'"):
        calibration.make_calibrator("beta")


class _Counter:
    """Counts LogisticRegression and TfidfVectorizer fits while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.counts = {"lr": 0, "tfidf": 0}
        for name, cls, method in (
            ("lr", LogisticRegression, "fit"),
            ("tfidf", TfidfVectorizer, "fit_transform"),
        ):
            monkeypatch.setattr(cls, method, self._counting(name, getattr(cls, method)))

    def _counting(self, name: str, method: Any) -> Any:
        def wrapper(instance: Any, *args: Any, **kwargs: Any) -> Any:
            self.counts[name] += 1
            return method(instance, *args, **kwargs)

        return wrapper


def test_training_fits_five_fold_models_and_serves_them(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _Counter(monkeypatch)
    result = model_lib.train(small_examples(), seed=1, n_jobs=1)
    # Features once, a logistic regression per fold and no other: the fold models are served.
    assert counter.counts == {"lr": 5, "tfidf": 1}
    assert result.metadata["calibration"]["models_fitted"] == 5
    step = result.pipeline[-1]
    assert len(step.estimators) == model_lib.CV_FOLDS
    features = result.pipeline[:-1].transform(["invoice overdue", "server outage"])
    expected = np.mean(
        [
            step.calibrator.predict_proba(calibration.as_logits(m.decision_function(features)))
            for m in step.estimators
        ],
        axis=0,
    )
    np.testing.assert_allclose(
        result.pipeline.predict_proba(["invoice overdue", "server outage"]), expected
    )
    assert result.metadata["calibration"]["serving"] == model_lib.SERVING_FOLD_ENSEMBLE


def test_refit_serving_fits_one_more_model_and_serves_it_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counter = _Counter(monkeypatch)
    result = model_lib.train(small_examples(), seed=1, n_jobs=1, serving=model_lib.SERVING_REFIT)
    assert counter.counts == {"lr": 6, "tfidf": 1}
    assert result.metadata["calibration"]["models_fitted"] == 6
    assert len(result.pipeline[-1].estimators) == 1


def test_the_calibration_is_recorded_measured_and_part_of_the_version() -> None:
    chosen = model_lib.train(small_examples(), seed=1)
    meta = chosen.metadata["calibration"]
    assert meta["method"] in calibration.CALIBRATORS
    assert set(meta["candidates"]) == set(calibration.CALIBRATORS)
    assert all({"log_loss", "ece"} == set(v) for v in meta["candidates"].values())
    assert meta["selected_by"] == calibration.SELECTION_RULE
    only_sigmoid = model_lib.train(small_examples(), seed=1, calibrators=["sigmoid"])
    assert only_sigmoid.metadata["calibration"]["method"] == "sigmoid"
    assert only_sigmoid.metadata["version"] != chosen.metadata["version"]
    refit = model_lib.train(small_examples(), seed=1, serving=model_lib.SERVING_REFIT)
    assert refit.metadata["version"] != chosen.metadata["version"]


def test_thresholds_come_from_the_cross_fitted_out_of_fold_probabilities(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[np.ndarray] = []
    choose = model_lib.choose_thresholds

    def spy(probabilities: np.ndarray, *args: Any, **kwargs: Any) -> dict[str, float]:
        seen.append(probabilities)
        return choose(probabilities, *args, **kwargs)

    monkeypatch.setattr(model_lib, "choose_thresholds", spy)
    result = model_lib.train(small_examples(), seed=1)
    [used] = seen
    np.testing.assert_array_equal(used, result.cv_probabilities)
    np.testing.assert_allclose(result.cv_probabilities.sum(axis=1), 1.0)


def test_parallel_training_gives_the_same_model() -> None:
    one = model_lib.train(small_examples(), seed=1, n_jobs=1)
    two = model_lib.train(small_examples(), seed=1, n_jobs=2)
    assert one.metadata["thresholds"] == two.metadata["thresholds"]
    assert one.metadata["metrics"] == two.metadata["metrics"]
    assert one.metadata["calibration"] == two.metadata["calibration"]
    np.testing.assert_array_equal(one.cv_probabilities, two.cv_probabilities)
    texts = ["invoice overdue", "server outage", "nda breach"]
    np.testing.assert_array_equal(
        one.pipeline.predict_proba(texts), two.pipeline.predict_proba(texts)
    )


def test_an_artifact_calibrated_the_old_way_still_loads(tmp_path: Any) -> None:
    # Artifacts trained before hold a CalibratedClassifierCV with one model per fold.
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    examples = small_examples()
    old = Pipeline(
        [
            ("features", TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)),
            ("clf", CalibratedClassifierCV(LogisticRegression(C=4.0), method="sigmoid", cv=5)),
        ]
    ).fit([e.text for e in examples], [e.label for e in examples])
    _, metadata, *_ = model_lib.train(examples, seed=1)
    metadata = {**metadata, "version": "tfidf-lr-000000000001"}
    model = model_lib.load(model_lib.save(old, metadata, out_dir=tmp_path))
    [prediction] = model.predict(["the invoice payment is overdue, refund the charge"])
    assert prediction.label == "billing"
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("method", calibration.CALIBRATORS)
def test_no_calibrator_is_certain_beyond_what_its_data_can_show(method: str) -> None:
    # Perfectly separated scores: still no probability of 1, so a threshold of 1.0 (never
    # routed) is never reached, even once rounded to six decimals as served.
    logits = np.repeat(np.eye(3) * 30.0, 100, axis=0)
    y = np.repeat(np.arange(3), 100)
    proba = calibration.make_calibrator(method).fit(logits, y).predict_proba(logits * 2)
    assert proba.max() <= 1.0 - (2 / 3) / (len(y) + 2) + 1e-12
    assert round(float(proba.max()), 6) < 1.0


def test_train_prints_the_calibrator_it_chose_and_what_each_measured(tmp_path: Any) -> None:
    import json

    from typer.testing import CliRunner

    from triage_cli.main import app

    for i, example in enumerate(small_examples()):
        folder = tmp_path / "data" / example.label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:03d}.txt").write_text(example.text)
    result = CliRunner().invoke(
        app, ["model", "train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 0, result.output
    [artifact] = (tmp_path / "m").iterdir()
    chosen = json.loads((artifact / "metadata.json").read_text())["calibration"]
    output = " ".join(result.output.split())
    assert f"calibration: {chosen['method']}, chosen by {calibration.SELECTION_RULE}" in output
    for method, figures in chosen["candidates"].items():
        assert f"{method} log-loss {figures['log_loss']:.4f}" in output
    assert "serving fold-ensemble" in output
