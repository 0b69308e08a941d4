"""Drift: baselines stored at training time, live windows, PSI and centroid distance."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.helpers import TOPIC_WORDS, small_examples
from triage_cli.main import app as cli
from triage_ml import drift
from triage_ml import model as model_lib
from triage_ml.rules import load_rules

OTHER_WORDS = [
    "recipe",
    "oven",
    "flour",
    "sugar",
    "butter",
    "garden",
    "tomato",
    "weather",
    "forecast",
    "rain",
    "football",
    "match",
    "goal",
    "holiday",
    "beach",
    "hotel",
    "flight",
    "museum",
    "concert",
    "guitar",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small tfidf-lr artifact, trained with a drift baseline."""
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def model(trained: Path) -> model_lib.LoadedModel:
    """The small artifact, loaded."""
    return model_lib.load(trained)


@pytest.fixture(scope="module")
def baseline(model: model_lib.LoadedModel) -> drift.Baseline:
    """The small artifact's drift baseline."""
    return drift.Baseline.from_metadata(model.metadata)


def _fresh(per_label: int, *, start: int = 100) -> list[str]:
    """Documents written the way the training set was, with numbers it never used."""
    docs = []
    for words in TOPIC_WORDS.values():
        vocab = words.split()
        for i in range(start, start + per_label):
            picked = " ".join(vocab[(i + k) % len(vocab)] for k in range(6))
            docs.append(f"dear team {picked} regards number {i}")
    return docs


def _other(count: int, *, seed: int = 0) -> list[str]:
    """Long documents in a vocabulary the model never saw."""
    rng = random.Random(seed)
    return [
        "hello all, " + " ".join(rng.choice(OTHER_WORDS) for _ in range(rng.randint(150, 400)))
        for _ in range(count)
    ]


def _window_of(
    model: model_lib.LoadedModel, baseline: drift.Baseline, texts: Sequence[str]
) -> drift.Window:
    """Score texts with the model and count them, as the classifier does."""
    window = baseline.window()

    def tap(batch: Sequence[str], features: Any, probabilities: np.ndarray) -> None:
        """Count the scoring call."""
        window.observe_scores(batch, probabilities, features)

    model.tapped(tap).predict(texts)
    return window


def test_training_data_against_its_own_baseline_shows_no_drift(
    model: model_lib.LoadedModel, baseline: drift.Baseline
) -> None:
    # The baseline's confidence and labels come from cross-validated predictions; counting the
    # same predictions and texts again gives exactly the baseline's histograms.
    _, metadata, truth, cv_probabilities = model_lib.train(small_examples(), seed=0)
    train = [e for e in small_examples() if model_lib.split_of(e) == "train"]
    window = baseline.window()
    window.observe_scores(
        [e.text for e in train], cv_probabilities, model.features([e.text for e in train])
    )
    report = drift.compare(baseline, window, drift.DriftThresholds(min_documents=10))
    for name in drift.PSI_SIGNALS:
        assert report.signal(name).value == 0.0, name
    assert report.signal(drift.CENTROID).value == pytest.approx(0.0, abs=1e-5)
    assert report.status is drift.Status.OK
    assert metadata["drift_baseline"] == baseline.to_dict()
    assert len(truth) == baseline.documents


def test_fresh_documents_like_the_training_set_stay_close_and_other_vocabulary_is_far(
    model: model_lib.LoadedModel, baseline: drift.Baseline
) -> None:
    same = drift.compare(baseline, _window_of(model, baseline, _fresh(50)))
    assert same.documents == 150
    for name in (drift.LABEL, drift.LENGTH, drift.CENTROID):
        assert same.signal(name).status is drift.Status.OK, same.signal(name)
    close = same.signal(drift.CENTROID).value
    assert close is not None and close < 0.05

    shifted = drift.compare(baseline, _window_of(model, baseline, _other(150)))
    assert shifted.status is drift.Status.DRIFT
    for name in drift.SIGNALS:
        assert shifted.signal(name).status is drift.Status.DRIFT, shifted.signal(name)
    for name in drift.PSI_SIGNALS:
        value = shifted.signal(name).value
        assert value is not None and value > 1.0, name
    assert shifted.signal(drift.CENTROID).value == pytest.approx(1.0)
    # Not one word of the training vocabulary: every document is featureless.
    assert shifted.featureless == 150


def test_half_shifted_traffic_moves_the_centroid_past_its_limit(
    model: model_lib.LoadedModel, baseline: drift.Baseline
) -> None:
    # Other vocabulary that shares the greeting and sign-off words with the training set.
    mixed = _fresh(25) + [f"dear team {text} regards" for text in _other(75, seed=3)]
    assert len(mixed) == 150
    report = drift.compare(baseline, _window_of(model, baseline, mixed))
    centroid = report.signal(drift.CENTROID)
    assert centroid.status is drift.Status.DRIFT
    assert centroid.value is not None and centroid.limit is not None
    assert centroid.limit < centroid.value < 1.0


def test_dense_embeddings_chance_distance_matches_the_documented_rule() -> None:
    rng = np.random.default_rng(0)
    dimension = 64
    topic = rng.normal(size=dimension)

    def documents(centre: np.ndarray, n: int) -> np.ndarray:
        """Unit vectors scattered around ``centre``, as sentence embeddings are."""
        rows = centre + rng.normal(scale=1.5, size=(n, dimension))
        return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True))

    training = documents(topic, 2000)
    centroid = drift.Centroid.from_features(training)
    assert centroid is not None and centroid.indices is None
    # In-distribution windows of 100: on average about the expected chance distance.
    distances = [
        centroid.distance(centroid.summarise(documents(topic, 100))[0]) for _ in range(200)
    ]
    assert 0.7 < float(np.mean(distances)) / centroid.expected_distance(100) < 1.3
    limit = centroid.limit(100, drift.DriftThresholds())
    assert max(distances) < limit
    other = centroid.distance(centroid.summarise(documents(rng.normal(size=dimension), 100))[0])
    assert other > limit


def test_a_large_vocabulary_keeps_only_the_heaviest_components() -> None:
    from scipy import sparse

    rng = np.random.default_rng(1)
    matrix = sparse.random(300, 5000, density=0.01, random_state=2, format="csr")
    matrix = matrix + sparse.csr_matrix(
        (rng.uniform(1, 2, 300), (np.arange(300), np.zeros(300, dtype=int))), shape=(300, 5000)
    )
    centroid = drift.Centroid.from_features(matrix, max_components=100)
    assert centroid is not None and centroid.indices is not None
    assert centroid.size == 101 and 0 in centroid.indices
    assert len(json.dumps(centroid.to_dict())) < 5000
    # Summing sparse rows over the kept columns is the dense sum, restricted.
    dense_sum = np.asarray(matrix[:50].sum(axis=0)).ravel()[centroid.indices]
    summed, void = centroid.summarise(matrix[:50])
    assert np.allclose(summed[:-1], dense_sum)
    assert void == 0 and summed[-1] == 0.0
    assert centroid.distance(centroid.summarise(matrix)[0]) < 0.01


# --- minimum counts, rolling windows, the monitor ---------------------------------------------


def test_too_few_documents_are_insufficient_whatever_they_show(
    model: model_lib.LoadedModel, baseline: drift.Baseline
) -> None:
    window = _window_of(model, baseline, _other(20))
    report = drift.compare(baseline, window)
    assert {s.status for s in report.signals} == {drift.Status.INSUFFICIENT}
    assert report.status is drift.Status.INSUFFICIENT
    assert "at least 100 needed" in report.signal(drift.LENGTH).detail
    assert drift.compare(baseline, baseline.window()).signal(drift.LABEL).value is None
    lower = drift.compare(baseline, window, drift.DriftThresholds(min_documents=20))
    assert lower.status is drift.Status.DRIFT


def test_rolling_window_holds_only_the_latest_documents(
    model: model_lib.LoadedModel, baseline: drift.Baseline
) -> None:
    rolling = drift.RollingWindow(baseline, max_documents=100)
    fresh, other = _fresh(40), _other(200)
    for i in range(0, len(fresh), 8):
        rolling.add(_window_of(model, baseline, fresh[i : i + 8]))
    # Buckets hold a tenth of the window (10), closed on the micro-batch that fills them.
    assert 100 - 10 - 8 <= rolling.documents <= 100
    for i in range(0, len(other), 9):
        rolling.add(_window_of(model, baseline, other[i : i + 9]))
        assert rolling.documents <= 100
    snapshot = rolling.snapshot()
    assert snapshot.documents >= 100 - 10 - 9
    # Only the other-vocabulary documents are left: none has a training word.
    assert snapshot.featureless == snapshot.documents
    # A micro-batch larger than the window is kept whole rather than dropped.
    tiny = drift.RollingWindow(baseline, max_documents=5)
    tiny.add(_window_of(model, baseline, fresh[:12]))
    assert tiny.documents == 12


def test_monitor_reports_serving_models_and_forgets_the_rest(
    model: model_lib.LoadedModel, baseline: drift.Baseline
) -> None:
    monitor = drift.DriftMonitor(max_documents=1000)
    window = monitor.batch_window(model.version, model.metadata)
    assert window is not None
    window.observe_scores(["dear team invoice refund"], np.array([[0.9, 0.05, 0.05]]))
    monitor.add(model.version, "champion", window)
    reports = monitor.reports([(model.version, "champion", model.metadata)])
    assert reports[(model.version, "champion")].documents == 1
    # A canary with no traffic yet still gets a (empty) report.
    both = monitor.reports(
        [(model.version, "champion", model.metadata), (model.version, "canary", model.metadata)]
    )
    assert both[(model.version, "canary")].documents == 0
    assert monitor.reports([]) == {}
    monitor.add(model.version, "champion", baseline.window())  # forgotten: ignored
    assert (
        monitor.reports([(model.version, "champion", model.metadata)])[
            (model.version, "champion")
        ].documents
        == 0
    )


# --- baselines in artifacts -------------------------------------------------------------------


def test_baseline_survives_a_json_round_trip(
    model: model_lib.LoadedModel, baseline: drift.Baseline
) -> None:
    again = drift.Baseline.from_dict(json.loads(json.dumps(baseline.to_dict())))
    assert again.to_dict() == baseline.to_dict()
    texts = _fresh(40) + _other(40)
    first = drift.compare(baseline, _window_of(model, baseline, texts))
    second = drift.compare(again, _window_of(model, again, texts))
    assert first == second
    assert baseline.documents == sum(baseline.label_counts) == sum(baseline.length_counts)


def test_training_stores_a_baseline_without_changing_the_version(trained: Path) -> None:
    meta = json.loads((trained / "metadata.json").read_text())
    assert meta["version"] == model_lib.version_for(small_examples(), seed=0)
    stored = meta["drift_baseline"]
    assert stored["labels"] == meta["labels"]
    assert stored["documents"] == meta["splits"]["train"]
    assert stored["centroid"]["spread"] > 0
    _, again, *_ = model_lib.train(small_examples(), seed=0)
    assert again["version"] == meta["version"]
    assert again["drift_baseline"] == stored


def test_old_artifacts_without_a_baseline_load_and_report_drift_unavailable(
    tmp_path: Path,
) -> None:
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=2)
    del metadata["drift_baseline"]
    path = model_lib.save(pipeline, metadata, out_dir=tmp_path)
    old = model_lib.load(path)
    assert old.predict(["invoice refund overdue"])[0].label == "billing"
    with pytest.raises(drift.BaselineUnavailableError, match="no drift baseline"):
        drift.Baseline.from_metadata(old.metadata)
    monitor = drift.DriftMonitor(max_documents=100)
    assert monitor.batch_window(old.version, old.metadata) is None
    assert monitor.reports([(old.version, "champion", old.metadata)]) == {}
    assert "no drift baseline" in (monitor.unavailable(old.version) or "")

    # The report says so and exits 0, before it would read anything from Kafka.
    result = CliRunner().invoke(cli, ["drift", "report", "--since", "1h", "--model", str(path)])
    assert result.exit_code == 0, result.output
    assert "drift: unavailable" in result.output
    assert "no drift baseline" in result.output


def test_a_baseline_in_an_unknown_format_is_unavailable(baseline: drift.Baseline) -> None:
    future = baseline.to_dict() | {"format": 99}
    with pytest.raises(drift.BaselineUnavailableError, match="format 99"):
        drift.Baseline.from_metadata({"drift_baseline": future})
    broken = baseline.to_dict() | {"label_counts": [1]}
    with pytest.raises(drift.BaselineUnavailableError, match="malformed"):
        drift.Baseline.from_metadata({"drift_baseline": broken})
    rules = model_lib.LoadedModel.from_rules(load_rules(None))
    with pytest.raises(drift.BaselineUnavailableError, match="rules model"):
        drift.Baseline.from_metadata(rules.metadata)
    report = drift.unavailable_report("no baseline here")
    assert report.status is drift.Status.UNAVAILABLE
    assert drift.render_table(report) == "drift: unavailable — no baseline here\n"


# --- the model's features --------------------------------------------------------------------


def test_a_tapped_model_scores_exactly_as_before_and_shares_its_features(
    model: model_lib.LoadedModel,
) -> None:
    texts = _fresh(5) + _other(5)
    seen: list[tuple[list[str], Any, np.ndarray]] = []

    def tap(batch: Sequence[str], features: Any, probabilities: np.ndarray) -> None:
        """Remember what the model handed over."""
        seen.append((list(batch), features, probabilities))

    assert model.tapped(tap).predict(texts) == model.predict(texts)
    [(batch, features, probabilities)] = seen
    assert batch == texts
    assert (features != model.features(texts)).nnz == 0
    assert np.array_equal(probabilities, model.predict_proba(texts))
    centroid = drift.Baseline.from_metadata(model.metadata).centroid
    assert centroid is not None
    assert features.shape == (len(texts), centroid.dimension)

    rules = model_lib.LoadedModel.from_rules(load_rules(None))
    assert rules.tapped(tap) is rules
    with pytest.raises(TypeError, match="no feature vectors"):
        rules.features(texts)


# --- presentation ----------------------------------------------------------------------------


def test_table_and_pictures_show_every_signal(
    model: model_lib.LoadedModel, baseline: drift.Baseline, tmp_path: Path
) -> None:
    window = _window_of(model, baseline, _fresh(20) + _other(100))
    report = drift.compare(baseline, window)
    table = drift.render_table(report)
    for name in drift.SIGNALS:
        assert any(line.startswith(name) and line.endswith("drift") for line in table.splitlines())
    assert "status: drift — confidence, label, length, centroid" in table
    assert "window: 160 documents (100 sharing no feature with the baseline centroid)" in table

    paths = drift.drift_pngs(baseline, window, tmp_path / "a", report=report, title="t")
    assert [p.name for p in paths] == [
        "drift-confidence.png",
        "drift-length.png",
        "drift-labels.png",
        "drift-centroid.png",
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The same window draws the same bytes.
    again = drift.drift_pngs(baseline, window, tmp_path / "b", report=report, title="t")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_importing_drift_does_not_import_matplotlib() -> None:
    code = "import sys, triage_ml.drift; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
