"""Sentence embeddings: the real packaged MiniLM model, offline, picklable, fingerprinted."""

from __future__ import annotations

import os
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from triage_ml import embeddings as emb
from triage_ml.embeddings import EmbedderMismatchError, SentenceEmbedder

BILLING = [
    "Invoice 1042 is overdue, please pay within seven days",
    "Payment reminder: your bill remains unpaid",
    "Please find attached the invoice for March",
    "Your credit card was charged twice for the subscription",
    "Request for a refund of the duplicate payment",
    "The amount due on your account is 250 euros",
    "We have not received your payment for the last quarter",
    "Updated billing address for our invoices",
    "Can you send a receipt for the annual licence fee",
    "Final notice before the debt goes to collection",
    "Your direct debit failed, please update your bank details",
    "Quote and pro forma invoice for the new order",
    "The VAT on this invoice is wrong, please reissue it",
    "Monthly statement of account attached",
    "Overdue balance: settle the outstanding amount today",
    "Price increase for your plan from next month",
    "Wire transfer confirmation for invoice 88",
    "Late payment fee added to your bill",
    "Please confirm the purchase order number for billing",
    "Credit note for the returned goods",
]
TECHNICAL = [
    "The server is down and nobody can log in",
    "Login fails with an internal error after the update",
    "The VPN disconnects every few minutes",
    "Database connection timeouts since this morning",
    "The app crashes when I upload a large file",
    "Password reset email never arrives",
    "Printer on the third floor shows a paper jam error",
    "Website returns 502 bad gateway",
    "Cannot install the new version, setup aborts",
    "Outlook keeps asking for my password",
    "The build pipeline fails on the test stage",
    "Disk is full on the file server",
    "Wi-Fi in the meeting room is very slow",
    "Two-factor authentication codes are rejected",
    "The API responds with a timeout under load",
    "Laptop does not boot after the firmware update",
    "Backup job failed last night with an I/O error",
    "Memory leak in the worker process, it restarts hourly",
    "SSL certificate expired on the customer portal",
    "Screen sharing does not work in video calls",
]


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder().fit([])


@pytest.fixture
def changed_model_copy(tmp_path: Path) -> Path:
    """A copy of the packaged model whose README has one more line: same weights, other files."""
    copy = tmp_path / "model"
    shutil.copytree(emb.default_model_path(), copy)
    with (copy / "README.md").open("a") as readme:
        readme.write("\nlocally modified\n")
    return copy


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_embeddings_are_float32_unit_vectors(embedder: SentenceEmbedder) -> None:
    vectors = embedder.transform(["invoice overdue", "server outage", ""])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.dimension_ == 384
    assert embedder.transform([]).shape == (0, 384)


def test_the_same_text_gives_the_same_vector(embedder: SentenceEmbedder) -> None:
    first = embedder.transform(["a contract renewal", "something else", "a contract renewal"])
    assert np.array_equal(first[0], first[2])
    emb.clear_cache()
    again = embedder.transform(["a contract renewal"])
    np.testing.assert_allclose(again[0], first[0], atol=1e-6)


def test_close_meanings_are_closer_than_unrelated_texts(embedder: SentenceEmbedder) -> None:
    invoice, reminder, outage = embedder.transform(
        [
            "invoice overdue, please pay",
            "payment reminder for an unpaid bill",
            "server outage, login fails",
        ]
    )
    assert cosine(invoice, reminder) > cosine(invoice, outage) + 0.2
    assert cosine(invoice, reminder) > cosine(reminder, outage) + 0.2


def test_fingerprint_is_a_stable_sha256_of_the_files(
    embedder: SentenceEmbedder, changed_model_copy: Path
) -> None:
    fingerprint = emb.model_fingerprint(emb.default_model_path())
    assert fingerprint == embedder.fingerprint_
    assert len(fingerprint) == 64
    assert emb.model_fingerprint(changed_model_copy) != fingerprint


def test_pickle_carries_no_torch_model_and_reloads_to_the_same_vectors(
    embedder: SentenceEmbedder,
) -> None:
    texts = ["the quarterly invoice", "a broken laptop"]
    before = embedder.transform(texts)
    blob = pickle.dumps(embedder)
    assert len(blob) < 100 * 1024
    assert b"torch._utils" not in blob  # how pickled tensors are rebuilt
    assert b"torch.nn" not in blob
    assert b"SentenceTransformer" not in blob
    restored = pickle.loads(blob)
    assert restored.__dict__.get("_loaded") is None
    assert restored.fingerprint_ == embedder.fingerprint_
    emb.clear_cache()
    np.testing.assert_allclose(restored.transform(texts), before, atol=1e-6)


def test_a_different_model_at_load_time_is_refused(
    embedder: SentenceEmbedder, changed_model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = pickle.dumps(embedder)
    monkeypatch.setenv(emb.DEFAULT_MODEL_ENV, str(changed_model_copy))
    restored = pickle.loads(blob)
    with pytest.raises(EmbedderMismatchError, match="fitted with"):
        restored.transform(["any text"])


def test_a_model_changed_on_disk_since_fitting_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(emb.default_model_path(), copy)
    fitted = SentenceEmbedder(model_path=str(copy)).fit([])
    blob = pickle.dumps(fitted)
    (copy / "config_sentence_transformers.json").write_text('{"changed": true}\n')
    with pytest.raises(EmbedderMismatchError):
        pickle.loads(blob).transform(["any text"])


def test_the_cache_avoids_re_encoding(embedder: SentenceEmbedder) -> None:
    emb.clear_cache()
    texts = [f"cache probe number {i}" for i in range(10)]
    first = embedder.transform(texts)
    info = emb.cache_info()
    assert (info.hits, info.misses, info.currsize) == (0, 10, 10)
    second = embedder.transform([*texts, texts[0]])
    info = emb.cache_info()
    assert (info.hits, info.misses) == (11, 10)
    assert info.maxsize == emb.CACHE_MAX_ENTRIES
    assert np.array_equal(second[:10], first)
    second[0] += 1.0  # callers own the returned array; the cached vector must not change
    assert np.array_equal(embedder.transform(texts[:1])[0], first[0])


def test_the_normalize_flag_is_part_of_the_cache_key(embedder: SentenceEmbedder) -> None:
    # all-MiniLM-L6-v2 ends in a Normalize module, so its vectors are unit length either way;
    # for another model they would differ, so the two settings must not share cache entries.
    emb.clear_cache()
    raw = clone(embedder).set_params(normalize=False).fit([])
    text = ["the norm of this sentence"]
    normalised, unnormalised = embedder.transform(text)[0], raw.transform(text)[0]
    assert emb.cache_info().misses == 2
    assert np.linalg.norm(normalised) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(unnormalised, normalised, atol=1e-5)


def test_text_past_what_the_model_reads_is_cut_without_changing_the_vector(
    embedder: SentenceEmbedder,
) -> None:
    long_text = " ".join(["The invoice for the support contract is attached."] * 120)
    assert len(long_text) > 5000
    uncut = clone(embedder).set_params(max_chars=len(long_text)).fit([])
    np.testing.assert_allclose(
        embedder.transform([long_text]), uncut.transform([long_text]), atol=1e-5
    )


def test_concurrent_transforms_agree(embedder: SentenceEmbedder) -> None:
    emb.clear_cache()
    texts = [f"parallel request {i % 7}" for i in range(28)]
    expected = embedder.transform(texts)
    emb.clear_cache()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(embedder.transform, [texts] * 4))
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-6)


def test_works_in_a_pipeline_with_a_calibrated_classifier(tmp_path: Path) -> None:
    texts = BILLING + TECHNICAL
    labels = ["billing"] * len(BILLING) + ["technical"] * len(TECHNICAL)
    pipeline = Pipeline(
        [
            ("embed", SentenceEmbedder()),
            (
                "clf",
                CalibratedClassifierCV(
                    LogisticRegression(C=4.0, max_iter=2000), method="sigmoid", cv=3
                ),
            ),
        ]
    )
    pipeline.fit(texts, labels)
    probe = [
        "Reminder: the invoice from last month is still unpaid",
        "I get an error page when I try to sign in",
    ]
    assert list(pipeline.predict(probe)) == ["billing", "technical"]
    assert pipeline.score(texts, labels) == 1.0
    joblib.dump(pipeline, tmp_path / "model.joblib")
    assert (tmp_path / "model.joblib").stat().st_size < 200 * 1024
    restored = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_allclose(
        restored.predict_proba(probe), pipeline.predict_proba(probe), atol=1e-9
    )


def test_default_model_path_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(emb.DEFAULT_MODEL_ENV, raising=False)
    packaged = emb.default_model_path()
    assert (packaged / "modules.json").is_file()
    assert (packaged / "model.safetensors").is_file()
    monkeypatch.setenv(emb.DEFAULT_MODEL_ENV, str(tmp_path))
    assert emb.default_model_path() == tmp_path


def test_loading_switches_the_hub_libraries_offline(embedder: SentenceEmbedder) -> None:
    assert embedder.fingerprint_
    for name in emb.OFFLINE_ENV:
        assert os.environ.get(name)


def test_misuse_fails_clearly(embedder: SentenceEmbedder, tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        SentenceEmbedder().transform(["not fitted"])
    with pytest.raises(ValueError, match="batch_size"):
        SentenceEmbedder(batch_size=0).fit([])
    with pytest.raises(ValueError, match="max_chars"):
        SentenceEmbedder(max_chars=0).fit([])
    not_text: list[Any] = [b"bytes"]
    with pytest.raises(TypeError, match="strings"):
        embedder.transform(not_text)
    with pytest.raises(FileNotFoundError):
        SentenceEmbedder(model_path=str(tmp_path / "absent")).fit([])
    with pytest.raises(ValueError, match="unknown backend 'onnx'"):
        SentenceEmbedder(backend="onnx").fit([])


def test_the_bf16_backend_gives_nearly_the_fp32_vectors(embedder: SentenceEmbedder) -> None:
    emb.clear_cache()
    bf16 = clone(embedder).set_params(backend="torch-bf16").fit([])
    texts = BILLING[:6] + TECHNICAL[:6]
    exact, fast = embedder.transform(texts), bf16.transform(texts)
    # Separate cache entries: a bf16 vector is never served to the fp32 embedder.
    assert emb.cache_info().misses == 2 * len(texts)
    assert fast.dtype == np.float32
    assert not np.array_equal(fast, exact)
    for a, b in zip(exact, fast, strict=True):
        assert cosine(a, b) > 0.999
    # Close enough that nearest neighbours do not change.
    assert np.array_equal((fast @ exact.T).argmax(axis=1), np.arange(len(texts)))


def test_an_embedder_pickled_before_backends_existed_loads_as_fp32(
    embedder: SentenceEmbedder,
) -> None:
    state = embedder.__getstate__()
    del state["backend"]
    old = SentenceEmbedder.__new__(SentenceEmbedder)
    old.__setstate__(state)
    assert old.get_params()["backend"] == "torch-fp32"
    np.testing.assert_array_equal(old.transform(["old pickle"]), embedder.transform(["old pickle"]))
