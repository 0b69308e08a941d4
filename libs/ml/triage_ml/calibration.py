"""Calibrators of a linear classifier's scores, one chosen by held-out measurement, and the
served classifier step that puts fold models' scores through it.

Every calibrator maps logits (documents x classes; a binary model's one score ``s`` is taken
as the logits ``(-s/2, s/2)``) to probabilities that sum to one:

  temperature - ``softmax(logits / T)``, one number fitted by log-loss, T >= 0.5;
  sigmoid     - Platt scaling, ``sigmoid(a_k * logit_k + b_k)`` per class, then rows
                normalised (what scikit-learn's ``method="sigmoid"`` does);
  isotonic    - a non-decreasing step function per class, then rows normalised.

``choose_calibrator`` fits each on the out-of-fold scores of all folds but one and measures
it on the one left out, fold by fold, so every measured probability comes from a calibrator
that never saw the document; the lowest log-loss wins.

Every calibrator fitted on n documents mixes ``1/(n+2)`` of the uniform distribution into its
output (Laplace's rule of succession): n held-out documents cannot show an error rate below
about 1/n, so no probability reaches 1, and a threshold of 1.0 keeps meaning "never routed".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from triage_ml.stats import ECE_BINS, expected_calibration_error

CALIBRATORS = ("temperature", "sigmoid", "isotonic")
"""The calibrators training measures, in the order they are tried and reported."""
MIN_TEMPERATURE = 0.5
"""Temperature may sharpen scores at most twofold. When the training folds are separable,
the held-out log-loss keeps falling as T goes to 0, and a document with no known word (its
logits the intercepts alone) would get the commonest label at 0.99: overconfidence that no
held-out fold of training-like data can show (tests/integration/test_canary_rollback_replay.py
caught it). Isotonic or Platt are chosen instead when they measure better."""
SELECTION_RULE = "lowest log-loss of cross-fitted out-of-fold probabilities"
# Probabilities are clipped here when taking a log: an isotonic step of exactly 0 for the
# true class costs log(1e-6), not infinity.
_LOG_FLOOR = 1e-6
# A class a fold model never saw (too few examples) gets this much less than the row's
# lowest logit: a probability of about e-20 relative to the rest.
_MISSING_CLASS_MARGIN = 20.0


class Calibrator(Protocol):
    """Fitted on logits and true class indices; maps logits to probabilities."""

    method: str

    def fit(self, logits: np.ndarray, y: np.ndarray) -> Calibrator: ...

    def predict_proba(self, logits: np.ndarray) -> np.ndarray: ...


def as_logits(scores: np.ndarray) -> np.ndarray:
    """A ``decision_function`` result as logits: 2-D, a binary score ``s`` as ``(-s/2, s/2)``."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim == 1:
        return np.column_stack([-values / 2, values / 2])
    return values


def aligned_logits(scores: np.ndarray, model_classes: Sequence[Any], labels: Sequence[str]) -> Any:
    """Logits in ``labels`` order from a model that knows ``model_classes`` (maybe fewer)."""
    logits = as_logits(scores)
    known = [str(c) for c in model_classes]
    if known == list(labels):
        return logits
    out = np.empty((len(logits), len(labels)), dtype=np.float64)
    out[:] = (logits.min(axis=1) - _MISSING_CLASS_MARGIN)[:, None]
    for j, label in enumerate(known):
        out[:, list(labels).index(label)] = logits[:, j]
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def _normalised(columns: np.ndarray) -> np.ndarray:
    total = columns.sum(axis=1, keepdims=True)
    uniform = np.full_like(columns, 1.0 / columns.shape[1])
    return np.where(total > 0, columns / np.where(total > 0, total, 1.0), uniform)


def log_loss(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-probability of the true class (probabilities floored at 1e-6)."""
    true = probabilities[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(true, _LOG_FLOOR, 1.0))))


class _Smoothed:
    """Mixes ``smoothing_ = 1/(n+2)`` of the uniform distribution into the probabilities."""

    smoothing_ = 0.0

    def _set_smoothing(self, n: int) -> None:
        self.smoothing_ = 1.0 / (n + 2)

    def _smooth(self, probabilities: np.ndarray) -> np.ndarray:
        k = probabilities.shape[1]
        return np.asarray((1.0 - self.smoothing_) * probabilities + self.smoothing_ / k)


class TemperatureCalibrator(_Smoothed):
    """``softmax(logits / T)``: one temperature, fitted by log-loss; keeps every argmax."""

    method = "temperature"

    def __init__(self) -> None:
        self.temperature_ = 1.0

    def fit(self, logits: np.ndarray, y: np.ndarray) -> TemperatureCalibrator:
        """Choose T in [MIN_TEMPERATURE, e^4] minimising the log-loss of ``y`` (bounded scalar
        search)."""
        from scipy.optimize import minimize_scalar

        def loss(log_t: float) -> float:
            return log_loss(_softmax(logits / np.exp(log_t)), y)

        found = minimize_scalar(
            loss, bounds=(float(np.log(MIN_TEMPERATURE)), 4.0), method="bounded"
        )
        self.temperature_ = float(np.exp(found.x))
        self._set_smoothing(len(y))
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities, one row per document."""
        return self._smooth(_softmax(logits / self.temperature_))


class SigmoidCalibrator(_Smoothed):
    """Platt scaling per class, one-vs-rest, on Platt's smoothed targets; rows normalised."""

    method = "sigmoid"

    def __init__(self) -> None:
        self.coef_: np.ndarray = np.ones(0)
        self.intercept_: np.ndarray = np.zeros(0)

    def fit(self, logits: np.ndarray, y: np.ndarray) -> SigmoidCalibrator:
        """Fit (a, b) per class by log-loss against (N+ + 1)/(N+ + 2) and 1/(N- + 2)."""
        from scipy.optimize import minimize

        k = logits.shape[1]
        self.coef_, self.intercept_ = np.ones(k), np.zeros(k)
        for j in range(k):
            score, positive = logits[:, j], y == j
            n_pos, n_neg = int(positive.sum()), int((~positive).sum())
            target = np.where(positive, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

            def loss(ab: np.ndarray, score: np.ndarray = score, t: np.ndarray = target) -> Any:
                z = ab[0] * score + ab[1]
                # log(1 + e^z) - t z, stably; its gradient is sigmoid(z) - t.
                value = np.logaddexp(0.0, z) - t * z
                g = 1.0 / (1.0 + np.exp(-z)) - t
                return value.sum(), np.array([(g * score).sum(), g.sum()])

            found = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
            self.coef_[j], self.intercept_[j] = found.x
        self._set_smoothing(len(y))
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities, one row per document."""
        columns = 1.0 / (1.0 + np.exp(-(logits * self.coef_ + self.intercept_)))
        return self._smooth(_normalised(columns))


class IsotonicCalibrator(_Smoothed):
    """A non-decreasing step function per class, one-vs-rest; rows normalised."""

    method = "isotonic"

    def __init__(self) -> None:
        self.regressors_: list[Any] = []

    def fit(self, logits: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        """Fit one isotonic regression of ``y == k`` on the logit of class k, per class."""
        from sklearn.isotonic import IsotonicRegression

        self.regressors_ = [
            IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                logits[:, j], (y == j).astype(np.float64)
            )
            for j in range(logits.shape[1])
        ]
        self._set_smoothing(len(y))
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities, one row per document."""
        columns = np.column_stack([r.predict(logits[:, j]) for j, r in enumerate(self.regressors_)])
        return self._smooth(_normalised(columns))


def make_calibrator(method: str) -> Calibrator:
    """An unfitted calibrator by name (``CALIBRATORS``)."""
    kinds: dict[str, type[Any]] = {
        "temperature": TemperatureCalibrator,
        "sigmoid": SigmoidCalibrator,
        "isotonic": IsotonicCalibrator,
    }
    if method not in kinds:
        raise ValueError(f"unknown calibrator {method!r}; choose one of {', '.join(CALIBRATORS)}")
    calibrator: Calibrator = kinds[method]()
    return calibrator


@dataclass(frozen=True)
class CalibrationChoice:
    """The chosen calibrator, fitted on every out-of-fold score, and what each candidate
    measured; ``probabilities`` are the chosen one's cross-fitted out-of-fold probabilities."""

    calibrator: Calibrator
    measurements: dict[str, dict[str, float]]
    probabilities: np.ndarray

    @property
    def method(self) -> str:
        """The chosen calibrator's name."""
        return self.calibrator.method

    def to_dict(self) -> dict[str, Any]:
        """The metadata's ``calibration``: method, rule, and each candidate's figures."""
        return {
            "method": self.method,
            "selected_by": SELECTION_RULE,
            "candidates": self.measurements,
        }


def cross_fitted(method: str, logits: np.ndarray, y: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """Each fold's probabilities from a ``method`` calibrator fitted on the other folds."""
    out = np.zeros_like(logits)
    for fold in np.unique(fold_of):
        held = fold_of == fold
        fitted = make_calibrator(method).fit(logits[~held], y[~held])
        out[held] = fitted.predict_proba(logits[held])
    return out


def choose_calibrator(
    logits: np.ndarray,
    y: np.ndarray,
    fold_of: np.ndarray,
    *,
    methods: Sequence[str] = CALIBRATORS,
) -> CalibrationChoice:
    """Measure each calibrator on out-of-fold ``logits`` (true class indices ``y``, fold of
    each row ``fold_of``) by cross-fitting over the folds; keep the lowest log-loss (first
    listed on a tie), fitted again on every row.

    Each candidate's figures: ``log_loss`` and ``ece`` (top-class, ``ECE_BINS`` bins).
    """
    if len(np.unique(fold_of)) < 2:
        raise ValueError("choosing a calibrator needs at least two folds")
    measured: dict[str, dict[str, float]] = {}
    probabilities: dict[str, np.ndarray] = {}
    for method in methods:
        proba = cross_fitted(method, logits, y, fold_of)
        correct = proba.argmax(axis=1) == y
        measured[method] = {
            "log_loss": round(log_loss(proba, y), 4),
            "ece": round(expected_calibration_error(proba.max(axis=1), correct, bins=ECE_BINS), 4),
        }
        probabilities[method] = proba
    best = min(methods, key=lambda m: (log_loss(probabilities[m], y), methods.index(m)))
    return CalibrationChoice(
        calibrator=make_calibrator(best).fit(logits, y),
        measurements=measured,
        probabilities=probabilities[best],
    )


class CalibratedLinearClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """The served classifier step: each linear model's scores through one calibrator, the
    probabilities averaged (a fold ensemble), or a single model's.

    Behaves as a fitted scikit-learn classifier at the end of a ``Pipeline``: ``classes_``,
    ``predict_proba`` (columns in ``classes_`` order) and ``predict``.
    """

    def __init__(
        self, estimators: Sequence[Any], calibrator: Calibrator, classes: Sequence[str]
    ) -> None:
        self.estimators = list(estimators)
        self.calibrator = calibrator
        self.classes = list(classes)
        self.classes_ = np.asarray(self.classes)

    def fit(self, x: Any, y: Any) -> CalibratedLinearClassifier:  # noqa: ARG002
        """Fitted by training (``triage_ml.model.train``), never here."""
        raise TypeError("a CalibratedLinearClassifier is built fitted, by training")

    def predict_proba(self, x: Any) -> np.ndarray:
        """The mean over the models of their calibrated probabilities."""
        labels = [str(c) for c in self.classes_]
        total = np.zeros((x.shape[0], len(labels)), dtype=np.float64)
        for estimator in self.estimators:
            logits = aligned_logits(estimator.decision_function(x), estimator.classes_, labels)
            total += self.calibrator.predict_proba(logits)
        return np.asarray(total / len(self.estimators))

    def predict(self, x: Any) -> np.ndarray:
        """The most probable class of each row."""
        return np.asarray(self.classes_[np.argmax(self.predict_proba(x), axis=1)])

    def __sklearn_is_fitted__(self) -> bool:
        """Always fitted: built from fitted parts."""
        return True
