"""Model artifacts: reproducible, immutable, integrity-checked, thresholds that mean something."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import small_examples
from triage_contracts import Action
from triage_ml import model as model_lib


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=1, changelog="unit test")
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("models"))


def test_artifact_records_what_produced_it(trained: Path) -> None:
    meta = json.loads((trained / "metadata.json").read_text())
    assert meta["version"] == trained.name
    assert meta["labels"] == ["billing", "legal", "technical"]
    assert meta["training_data_sha256"] == model_lib.data_hash(small_examples())
    assert meta["feature_code_version"] == "2"
    assert meta["library_versions"]["scikit-learn"] != "absent"
    assert meta["changelog"] == "unit test"
    assert set(meta["thresholds"]) == set(meta["labels"])
    assert 0.0 <= meta["metrics"]["cv_macro_f1"] <= 1.0


def test_training_twice_gives_the_same_version_and_metrics() -> None:
    _, first, *_ = model_lib.train(small_examples(), seed=1)
    _, second, *_ = model_lib.train(list(reversed(small_examples())), seed=1)
    assert first["version"] == second["version"]
    assert first["training_data_sha256"] == second["training_data_sha256"]
    assert first["metrics"] == second["metrics"]


def test_loaded_model_scores_with_calibrated_probabilities(trained: Path) -> None:
    model = model_lib.load(trained)
    [invoice, outage] = model.predict(
        ["the invoice payment is overdue, refund the charge", "api server outage, login error"]
    )
    assert invoice.label == "billing"
    assert outage.label == "technical"
    for prediction in (invoice, outage):
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
        assert prediction.threshold == model.thresholds[prediction.label]
        expected = Action.ROUTE if prediction.confidence >= prediction.threshold else Action.REVIEW
        assert prediction.action is expected


def test_tampered_artifact_is_refused(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / trained.name
    copy.mkdir()
    for name in ("metadata.json", "model.joblib"):
        (copy / name).write_bytes((trained / name).read_bytes())
    with (copy / "model.joblib").open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(model_lib.ModelLoadError, match="SHA-256"):
        model_lib.load(copy)


def test_missing_artifact_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(model_lib.ModelLoadError, match="cannot read model artifact"):
        model_lib.load(tmp_path / "nope")


def test_saving_the_same_version_again_keeps_the_original(trained: Path) -> None:
    before = (trained / "model.joblib").stat().st_mtime_ns
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=1)
    assert model_lib.save(pipeline, metadata, out_dir=trained.parent) == trained
    assert (trained / "model.joblib").stat().st_mtime_ns == before


def test_thresholds_reach_the_target_precision() -> None:
    # Confident predictions for "a" are right; the unsure ones are wrong half the time.
    proba = np.array([[0.99, 0.01]] * 200 + [[0.6, 0.4]] * 100)
    truth = ["a"] * 200 + ["a", "b"] * 50
    thresholds = model_lib.choose_thresholds(proba, truth, ["a", "b"], target_precision=0.95)
    assert thresholds["a"] == 0.99
    # "b" is never predicted, so nothing can be auto-routed to it.
    assert thresholds["b"] == 1.0


def test_a_few_lucky_predictions_do_not_set_a_threshold() -> None:
    # 10 out of 10 right is not evidence of 95% precision (its lower bound is about 0.79).
    proba = np.array([[0.99, 0.01]] * 10 + [[0.01, 0.99]] * 300)
    truth = ["a"] * 10 + ["b"] * 300
    thresholds = model_lib.choose_thresholds(proba, truth, ["a", "b"], target_precision=0.95)
    assert thresholds["a"] == 1.0
    assert thresholds["b"] == 0.5  # 300 right of 300: the floor is enough


def test_the_embedding_backend_is_recorded_and_part_of_the_version() -> None:
    examples = small_examples()
    fp32 = model_lib.version_for(examples, kind="embed-lr", embedding_fingerprint="f")
    bf16 = model_lib.version_for(
        examples, kind="embed-lr", embedding_fingerprint="f", backend="torch-bf16"
    )
    assert fp32 != bf16
    assert fp32 == model_lib.version_for(
        examples, kind="embed-lr", embedding_fingerprint="f", backend="torch-fp32"
    )
    pipeline, metadata, *_ = model_lib.train(examples, kind="embed-lr", backend="torch-bf16")
    assert metadata["embedding"]["backend"] == "torch-bf16"
    assert metadata["params"]["backend"] == "torch-bf16"
    assert pipeline.named_steps["features"].backend == "torch-bf16"
    assert metadata["version"] == model_lib.version_for(
        examples,
        kind="embed-lr",
        embedding_fingerprint=metadata["embedding"]["fingerprint"],
        backend="torch-bf16",
    )


def test_a_backend_is_refused_where_it_does_not_apply() -> None:
    assert model_lib.embedding_backend("tfidf-lr", None) is None
    assert model_lib.embedding_backend("embed-lr", None) == "torch-fp32"
    with pytest.raises(ValueError, match="embed-lr models only"):
        model_lib.embedding_backend("tfidf-lr", "torch-bf16")
    with pytest.raises(ValueError, match="unknown backend 'int4'"):
        model_lib.embedding_backend("embed-lr", "int4")


def test_an_embed_lr_artifact_loads_its_embedder_when_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from triage_ml import embeddings as emb

    pipeline, metadata, *_ = model_lib.train(small_examples(), kind="embed-lr")
    artifact = model_lib.save(pipeline, metadata, out_dir=tmp_path / "models")
    emb.clear_cache()
    model = model_lib.load(artifact)  # the embedding model is loaded and run once here ...
    assert emb.cache_info().currsize == 0  # ... without filling the cache
    assert model.predict(["the invoice is overdue"])[0].label in model.labels

    changed = tmp_path / "other-embedder"
    shutil.copytree(emb.default_model_path(), changed)
    (changed / "README.md").write_text("another model\n")
    monkeypatch.setenv(emb.DEFAULT_MODEL_ENV, str(changed))
    with pytest.raises(model_lib.ModelLoadError, match=r"cannot embed.*fitted with"):
        model_lib.load(artifact)
    monkeypatch.setenv(emb.DEFAULT_MODEL_ENV, str(tmp_path / "absent"))
    with pytest.raises(model_lib.ModelLoadError, match=r"cannot embed.*does not exist"):
        model_lib.load(artifact)
    # Loaded for scoring elsewhere: the embedder is checked where it is prepared.
    unprepared = model_lib.load(artifact, prepare=False)
    with pytest.raises(model_lib.ModelLoadError, match=r"cannot embed.*does not exist"):
        unprepared.prepare()


def test_a_tfidf_embed_lr_artifact_joins_both_features_and_checks_its_embedder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from triage_ml import embeddings as emb

    pipeline, metadata, *_ = model_lib.train(small_examples(), kind="tfidf-embed-lr")
    union = pipeline.named_steps["features"]
    tfidf, embedder = (part for _, part in union.transformer_list)
    vectors = pipeline[:-1].transform(["the invoice is overdue"])
    assert vectors.shape[1] == len(tfidf.vocabulary_) + embedder.dimension_
    assert metadata["embedding"]["fingerprint"] == embedder.fingerprint_
    assert metadata["params"]["backend"] == "torch-fp32"
    artifact = model_lib.save(pipeline, metadata, out_dir=tmp_path / "models")
    model = model_lib.load(artifact)
    [prediction] = model.predict(["the invoice payment is overdue, refund the charge"])
    assert prediction.label == "billing"

    changed = tmp_path / "other-embedder"
    shutil.copytree(emb.default_model_path(), changed)
    (changed / "README.md").write_text("another model\n")
    monkeypatch.setenv(emb.DEFAULT_MODEL_ENV, str(changed))
    with pytest.raises(model_lib.ModelLoadError, match=r"cannot embed.*fitted with"):
        model_lib.load(artifact)
