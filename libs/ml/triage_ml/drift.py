"""Drift: how far live documents and predictions have moved from what a model was trained on.

At training time a ``Baseline`` is computed and stored in the artifact's metadata
(``drift_baseline``): histograms of the model's cross-validated confidence (ten equal bins
from 0 to 1), of its predicted labels, and of the text length (log-spaced bins of
characters), and the centroid of the model's own feature vectors (TF-IDF for ``tfidf-lr``,
the sentence embedding for ``embed-lr``) with the spread of the training documents around it.

Live documents are counted into a ``Window`` (counts and a running vector sum, never the
texts), and ``compare`` turns a window into a ``DriftReport``, one signal each:

  * ``confidence``, ``label``, ``length``: population stability index (``stats.psi``) of the live
    histogram against the baseline's; drift above ``max_psi`` (0.2).
  * ``centroid``: cosine distance between the live centroid and the baseline's; drift above
    ``distance_factor`` (0.25) times the baseline spread, plus ``noise_allowance`` (3) times
    the distance that a window of the same size drawn from the training distribution would
    show by chance (``Centroid.expected_distance``).

A signal computed from fewer than ``min_documents`` (100) documents is ``insufficient``. A
model without a baseline (trained before drift monitoring, or the rules model) is
``unavailable``: ``Baseline.from_metadata`` raises ``BaselineUnavailableError`` with the
reason and callers report it, never fail on it.

Everything here is pure apart from ``drift_pngs``, which writes pictures.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from triage_ml.plots import new_figure, save_png
from triage_ml.stats import psi
from triage_ml.tables import grid

BASELINE_FORMAT = 1
METADATA_KEY = "drift_baseline"
CONFIDENCE_EDGES: tuple[float, ...] = tuple(i / 10 for i in range(11))
# Characters: [0, 32), [32, 64), ... [65536, 131072), [131072, ...): the last bin is open.
LENGTH_EDGES: tuple[float, ...] = (0.0, *(float(2**k) for k in range(5, 18)))
# A TF-IDF vocabulary can run to hundreds of thousands of terms; the centroid keeps the
# components that carry most of the mean vector, so metadata.json and each window stay small.
MAX_CENTROID_COMPONENTS = 1024

CONFIDENCE = "confidence"
LABEL = "label"
LENGTH = "length"
CENTROID = "centroid"
PSI_SIGNALS = (CONFIDENCE, LABEL, LENGTH)
SIGNALS = (*PSI_SIGNALS, CENTROID)
PNG_FILES = {
    CONFIDENCE: "drift-confidence.png",
    LENGTH: "drift-length.png",
    LABEL: "drift-labels.png",
    CENTROID: "drift-centroid.png",
}


class BaselineUnavailableError(LookupError):
    """The model carries no usable drift baseline; the message says why."""


class Status(enum.StrEnum):
    """What a drift signal (or a whole report) concluded."""

    OK = "ok"
    DRIFT = "drift"
    INSUFFICIENT = "insufficient"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    """When a signal counts as drift, and how many documents it needs first."""

    max_psi: float = 0.2
    min_documents: int = 100
    # Centroid limit: distance_factor x spread + noise_allowance x expected_distance(n).
    distance_factor: float = 0.25
    noise_allowance: float = 3.0

    def __post_init__(self) -> None:
        """Refuse settings under which the signals would mean nothing."""
        if self.max_psi <= 0.0:
            raise ValueError(f"max_psi must be positive, got {self.max_psi}")
        if self.min_documents < 1:
            raise ValueError(f"min_documents must be at least 1, got {self.min_documents}")
        if self.distance_factor <= 0.0 or self.noise_allowance < 0.0:
            raise ValueError("distance_factor must be positive and noise_allowance not negative")


# --- feature vectors: dense arrays (embeddings) or SciPy sparse matrices (TF-IDF) ---------


def _is_sparse(features: Any) -> bool:
    """Whether ``features`` is a SciPy sparse matrix or array."""
    from scipy import sparse

    return bool(sparse.issparse(features))


def _dense(features: Any) -> np.ndarray:
    """Return a 2-D float64 array view of dense feature rows."""
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"feature vectors must be a 2-D matrix, got shape {array.shape}")
    return array


def _column_sums(features: Any) -> np.ndarray:
    """Return the sum of the rows, as a dense float64 vector over every column."""
    if _is_sparse(features):
        csr = features.tocsr()
        sums: np.ndarray = np.bincount(csr.indices, weights=csr.data, minlength=csr.shape[1])
        return sums.astype(np.float64)
    return np.asarray(_dense(features).sum(axis=0), dtype=np.float64)


def _positions_of(dimension: int, indices: np.ndarray | None) -> np.ndarray:
    """For each feature column, its position among the kept components, or -1."""
    if indices is None:
        return np.arange(dimension, dtype=np.int64)
    positions = np.full(dimension, -1, dtype=np.int64)
    positions[indices] = np.arange(len(indices))
    return positions


def _project(
    features: Any, positions: np.ndarray, size: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Restrict feature rows to the kept components (``positions``, of ``size``).

    Returns the column sums over the kept components, each row's squared norm there and,
    with ``weights``, each row's dot product with them. O(non-zeros) for sparse rows.
    """
    if features.shape[1] != len(positions):
        raise ValueError(
            f"feature vectors have {features.shape[1]} components, the baseline "
            f"{len(positions)}: they come from a different model"
        )
    n = features.shape[0]
    if _is_sparse(features):
        csr = features.tocsr()
        rows = np.repeat(np.arange(n), np.diff(csr.indptr))
        where = positions[csr.indices]
        kept = where >= 0
        where, rows = where[kept], rows[kept]
        data = np.asarray(csr.data[kept], dtype=np.float64)
        sums = np.bincount(where, weights=data, minlength=size).astype(np.float64)
        squares = np.bincount(rows, weights=data * data, minlength=n).astype(np.float64)
        dots = None
        if weights is not None:
            dots = np.bincount(rows, weights=data * weights[where], minlength=n).astype(np.float64)
        return sums, squares, dots
    dense = _dense(features)
    if size != len(positions):
        dense = dense[:, np.flatnonzero(positions >= 0)]
    return (
        np.asarray(dense.sum(axis=0), dtype=np.float64),
        np.asarray((dense * dense).sum(axis=1), dtype=np.float64),
        None if weights is None else np.asarray(dense @ weights, dtype=np.float64),
    )


def _round(values: np.ndarray, digits: int = 6) -> np.ndarray:
    """Round to ``digits`` significant digits, which keeps the stored JSON short."""
    return np.array([float(f"{v:.{digits}g}") for v in values], dtype=np.float64)


# --- the baseline ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Centroid:
    """Where the training documents sit in the model's feature space, and how spread out.

    Vectors are restricted to the components in ``indices`` (all ``dimension`` of them when
    None), plus one more axis for documents with nothing there (for TF-IDF: none of those
    words): such a document counts as a vector of the typical length ``void_norm`` along that
    axis, orthogonal to every real one, so a stream of unknown words moves the centroid
    instead of vanishing from it. ``vector`` is the L2-normalised mean of the training
    vectors in that space (the extra axis last); ``spread`` the mean cosine distance of a
    training document to it. ``mean_norm`` (the norm of the mean vector) and
    ``mean_square_norm`` (the mean squared norm of a vector) give the sampling noise of a
    window's centroid (``expected_distance``).
    """

    dimension: int
    indices: np.ndarray | None
    vector: np.ndarray
    void_norm: float
    spread: float
    mean_norm: float
    mean_square_norm: float

    @classmethod
    def from_features(
        cls, features: Any, *, max_components: int = MAX_CENTROID_COMPONENTS
    ) -> Centroid | None:
        """Compute the centroid of training feature rows; None when they are all zero."""
        rows, dimension = features.shape
        if rows == 0:
            return None
        indices: np.ndarray | None = None
        if dimension > max_components:
            # The components that carry most of the mean vector; ties broken by position.
            mean = _column_sums(features) / rows
            order = np.argsort(-np.abs(mean), kind="stable")[:max_components]
            indices = np.sort(order).astype(np.int64)
        positions = _positions_of(dimension, indices)
        size = dimension if indices is None else len(indices)
        sums, squares, _ = _project(features, positions, size)
        void = squares == 0.0
        if void.all():
            return None
        void_norm = float(np.sqrt(squares[~void].mean()))
        mean = np.append(sums, void.sum() * void_norm) / rows
        mean_norm = float(np.linalg.norm(mean))
        vector = _round(mean / mean_norm)
        _, _, dots = _project(features, positions, size, weights=vector[:-1])
        assert dots is not None  # weights were given
        dots = dots + void * void_norm * vector[-1]
        norms = np.where(void, void_norm, np.sqrt(squares))
        cosines = dots / (norms * float(np.linalg.norm(vector)))
        return cls(
            dimension=int(dimension),
            indices=indices,
            vector=vector,
            void_norm=void_norm,
            spread=float(np.mean(1.0 - cosines)),
            mean_norm=mean_norm,
            mean_square_norm=float(np.mean(np.where(void, void_norm**2, squares))),
        )

    @cached_property
    def _positions(self) -> np.ndarray:
        """For each feature column, its position among the kept components, or -1."""
        return _positions_of(self.dimension, self.indices)

    @property
    def size(self) -> int:
        """The length of a summed window vector: the kept components and the extra axis."""
        return len(self.vector)

    def summarise(self, features: Any) -> tuple[np.ndarray, int]:
        """Return the rows' vector sum (kept components, then the extra axis) and how many
        rows had nothing in the kept components."""
        sums, squares, _ = _project(features, self._positions, self.size - 1)
        void = int(np.count_nonzero(squares == 0.0))
        return np.append(sums, void * self.void_norm), void

    def distance(self, vector_sum: np.ndarray) -> float:
        """Cosine distance of a summed window vector's direction to the centroid (0 to 2).

        An empty sum (no documents) is at distance 1.
        """
        norm = float(np.linalg.norm(vector_sum))
        if norm == 0.0:
            return 1.0
        cosine = float(vector_sum @ self.vector) / (norm * float(np.linalg.norm(self.vector)))
        return min(2.0, max(0.0, 1.0 - cosine))

    def expected_distance(self, documents: int) -> float:
        """The distance a window of ``documents`` drawn from the training data shows by chance.

        The mean of n vectors differs from the true mean by noise of expected squared norm
        (E|x|^2 - |m|^2) / n, nearly all of it across the mean's direction; an angle t off
        the mean gives a distance of about t^2 / 2, so the expected distance is about
        (E|x|^2 - |m|^2) / (2 n |m|^2).
        """
        if documents <= 0:
            return math.inf
        variance = max(0.0, self.mean_square_norm - self.mean_norm**2)
        return variance / (2.0 * documents * self.mean_norm**2)

    def limit(self, documents: int, thresholds: DriftThresholds) -> float:
        """The distance above which a window of ``documents`` counts as drift."""
        return (
            thresholds.distance_factor * self.spread
            + thresholds.noise_allowance * self.expected_distance(documents)
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the centroid as JSON-ready built-in types."""
        return {
            "dimension": self.dimension,
            "indices": None if self.indices is None else [int(i) for i in self.indices],
            "vector": [float(v) for v in self.vector],
            "void_norm": self.void_norm,
            "spread": self.spread,
            "mean_norm": self.mean_norm,
            "mean_square_norm": self.mean_square_norm,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Centroid:
        """Rebuild a centroid from ``to_dict`` output; ValueError if it is inconsistent."""
        dimension = int(data["dimension"])
        vector = np.asarray(data["vector"], dtype=np.float64)
        indices = None
        kept = dimension
        if data["indices"] is not None:
            indices = np.asarray(data["indices"], dtype=np.int64)
            kept = len(indices)
            if len(indices) and (indices.min() < 0 or indices.max() >= dimension):
                raise ValueError("centroid indices fall outside its dimension")
        if len(vector) != kept + 1:
            raise ValueError("centroid vector does not match its components")
        return cls(
            dimension=dimension,
            indices=indices,
            vector=vector,
            void_norm=float(data["void_norm"]),
            spread=float(data["spread"]),
            mean_norm=float(data["mean_norm"]),
            mean_square_norm=float(data["mean_square_norm"]),
        )


def _histogram(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Count values into bins [edges[i], edges[i+1]); the first and last bins are open-ended."""
    bins = len(edges) - 1
    index = np.clip(np.searchsorted(np.asarray(edges), values, side="right") - 1, 0, bins - 1)
    return np.bincount(index, minlength=bins).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Baseline:
    """What the model saw at training time, to compare live windows with (JSON-serialisable).

    Confidence and label counts come from the predictions named in ``predictions`` (5-fold
    cross-validated on the train split, so they are out-of-sample as live predictions are);
    length counts and the centroid from the training texts.
    """

    documents: int
    labels: tuple[str, ...]
    confidence_edges: tuple[float, ...]
    confidence_counts: np.ndarray
    confidence_mean: float
    label_counts: np.ndarray
    length_edges: tuple[float, ...]
    length_counts: np.ndarray
    length_mean: float
    centroid: Centroid | None
    predictions: str

    @classmethod
    def from_training(
        cls,
        texts: Sequence[str],
        probabilities: np.ndarray,
        labels: Sequence[str],
        features: Any,
        *,
        predictions: str,
        max_components: int = MAX_CENTROID_COMPONENTS,
    ) -> Baseline:
        """Build the baseline from the training texts, their predicted probabilities (columns
        in ``labels`` order) and the model's feature vectors of the same texts."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.shape != (len(texts), len(labels)) or features.shape[0] != len(texts):
            raise ValueError("texts, probabilities and feature rows must line up")
        if not texts:
            raise ValueError("a baseline needs at least one training document")
        confidence = probabilities.max(axis=1)
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        return cls(
            documents=len(texts),
            labels=tuple(labels),
            confidence_edges=CONFIDENCE_EDGES,
            confidence_counts=_histogram(confidence, CONFIDENCE_EDGES),
            confidence_mean=float(confidence.mean()),
            label_counts=np.bincount(probabilities.argmax(axis=1), minlength=len(labels)),
            length_edges=LENGTH_EDGES,
            length_counts=_histogram(lengths, LENGTH_EDGES),
            length_mean=float(lengths.mean()),
            centroid=Centroid.from_features(features, max_components=max_components),
            predictions=predictions,
        )

    def window(self) -> Window:
        """Return an empty window with this baseline's bins, labels and components."""
        return Window(
            labels=self.labels,
            confidence_edges=self.confidence_edges,
            length_edges=self.length_edges,
            centroid=self.centroid,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the baseline as JSON-ready built-in types (for metadata.json)."""
        return {
            "format": BASELINE_FORMAT,
            "predictions": self.predictions,
            "documents": self.documents,
            "labels": list(self.labels),
            "confidence": {
                "edges": list(self.confidence_edges),
                "counts": [int(c) for c in self.confidence_counts],
                "mean": self.confidence_mean,
            },
            "label_counts": [int(c) for c in self.label_counts],
            "length": {
                "edges": list(self.length_edges),
                "counts": [int(c) for c in self.length_counts],
                "mean": self.length_mean,
            },
            "centroid": None if self.centroid is None else self.centroid.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        """Rebuild a baseline from ``to_dict`` output.

        Raises BaselineUnavailableError for another format or a malformed baseline.
        """
        if data.get("format") != BASELINE_FORMAT:
            raise BaselineUnavailableError(
                f"drift baseline format {data.get('format')!r} is not supported "
                f"(this code reads format {BASELINE_FORMAT})"
            )
        try:
            confidence, length = data["confidence"], data["length"]
            baseline = cls(
                documents=int(data["documents"]),
                labels=tuple(str(label) for label in data["labels"]),
                confidence_edges=tuple(float(e) for e in confidence["edges"]),
                confidence_counts=np.asarray(confidence["counts"], dtype=np.int64),
                confidence_mean=float(confidence["mean"]),
                label_counts=np.asarray(data["label_counts"], dtype=np.int64),
                length_edges=tuple(float(e) for e in length["edges"]),
                length_counts=np.asarray(length["counts"], dtype=np.int64),
                length_mean=float(length["mean"]),
                centroid=None if data["centroid"] is None else Centroid.from_dict(data["centroid"]),
                predictions=str(data["predictions"]),
            )
            baseline._check()
        except (KeyError, TypeError, ValueError) as exc:
            raise BaselineUnavailableError(f"the drift baseline is malformed: {exc}") from exc
        return baseline

    def _check(self) -> None:
        """Raise ValueError unless the histograms fit their edges and labels."""
        if len(self.confidence_counts) != len(self.confidence_edges) - 1:
            raise ValueError("confidence counts do not fit the edges")
        if len(self.length_counts) != len(self.length_edges) - 1:
            raise ValueError("length counts do not fit the edges")
        if len(self.label_counts) != len(self.labels):
            raise ValueError("label counts do not fit the labels")
        if self.documents < 1:
            raise ValueError("the baseline holds no documents")

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Baseline:
        """Return the baseline stored in a model's metadata.

        Raises BaselineUnavailableError, with the reason, when there is none.
        """
        stored = metadata.get(METADATA_KEY)
        if stored is None:
            version = metadata.get("version", "this model")
            if metadata.get("kind") == "rules":
                raise BaselineUnavailableError(f"{version} is the rules model: no drift baseline")
            raise BaselineUnavailableError(
                f"{version} has no drift baseline (trained before drift monitoring; "
                "retrain it to get one)"
            )
        if not isinstance(stored, Mapping):
            raise BaselineUnavailableError("the drift baseline is malformed: not an object")
        return cls.from_dict(stored)


# --- live windows -----------------------------------------------------------------------------


@dataclass(eq=False)
class Window:
    """Live documents counted into a baseline's bins: counts and a vector sum, not texts."""

    labels: tuple[str, ...]
    confidence_edges: tuple[float, ...]
    length_edges: tuple[float, ...]
    centroid: Centroid | None
    documents: int = 0
    confidence_counts: np.ndarray = field(init=False)
    confidence_sum: float = 0.0
    label_counts: np.ndarray = field(init=False)
    length_counts: np.ndarray = field(init=False)
    length_sum: float = 0.0
    # Documents whose feature vectors were observed, and how many had none of the centroid's
    # components (for TF-IDF: no word the centroid keeps).
    vectors: int = 0
    featureless: int = 0
    vector_sum: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        """Start every count at zero."""
        self.confidence_counts = np.zeros(len(self.confidence_edges) - 1, dtype=np.int64)
        self.label_counts = np.zeros(len(self.labels), dtype=np.int64)
        self.length_counts = np.zeros(len(self.length_edges) - 1, dtype=np.int64)
        size = 0 if self.centroid is None else self.centroid.size
        self.vector_sum = np.zeros(size, dtype=np.float64)

    def observe(
        self,
        *,
        lengths: Sequence[int] | np.ndarray,
        confidences: Sequence[float] | np.ndarray,
        labels: Sequence[str] | np.ndarray,
        features: Any = None,
    ) -> None:
        """Count scored documents: text lengths in characters, confidences, predicted labels
        (names, or column indices into ``labels``) and, if given, their feature rows.

        Everything is computed before anything is counted, so a bad argument changes nothing.
        """
        length_array = np.asarray(lengths, dtype=np.int64)
        confidence_array = np.asarray(confidences, dtype=np.float64)
        n = len(length_array)
        if len(confidence_array) != n or len(labels) != n:
            raise ValueError("lengths, confidences and labels must have one entry per document")
        label_index = self._label_indices(labels)
        vector_sum = None
        featureless = 0
        if features is not None and self.centroid is not None:
            if features.shape[0] != n:
                raise ValueError("feature rows must match the documents")
            vector_sum, featureless = self.centroid.summarise(features)
        confidence_counts = _histogram(confidence_array, self.confidence_edges)
        length_counts = _histogram(length_array, self.length_edges)
        label_counts = np.bincount(label_index, minlength=len(self.labels))

        self.documents += n
        self.confidence_counts += confidence_counts
        self.confidence_sum += float(confidence_array.sum())
        self.length_counts += length_counts
        self.length_sum += float(length_array.sum())
        self.label_counts += label_counts
        if vector_sum is not None:
            self.vector_sum += vector_sum
            self.vectors += n
            self.featureless += featureless

    def observe_scores(
        self, texts: Sequence[str], probabilities: np.ndarray, features: Any = None
    ) -> None:
        """Count a scoring call: texts, probabilities (columns in ``labels`` order), features."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim != 2 or probabilities.shape[1] != len(self.labels):
            raise ValueError(
                f"probabilities need one column per label ({len(self.labels)}), "
                f"got shape {probabilities.shape}"
            )
        self.observe(
            lengths=np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts)),
            confidences=probabilities.max(axis=1),
            labels=probabilities.argmax(axis=1),
            features=features,
        )

    def _label_indices(self, labels: Sequence[str] | np.ndarray) -> np.ndarray:
        """Map label names (or pass through column indices) to positions in ``labels``."""
        array = np.asarray(labels)
        if array.dtype.kind in "iu":
            if len(array) and (array.min() < 0 or array.max() >= len(self.labels)):
                raise ValueError("label index out of range")
            return array.astype(np.int64)
        position = {label: i for i, label in enumerate(self.labels)}
        unknown = sorted({str(label) for label in array} - position.keys())
        if unknown:
            raise ValueError(f"labels the baseline does not know: {', '.join(unknown)}")
        return np.fromiter((position[str(label)] for label in array), np.int64, len(array))

    def add(self, other: Window) -> None:
        """Count another window of the same baseline into this one."""
        if (
            other.labels != self.labels
            or other.confidence_edges != self.confidence_edges
            or other.length_edges != self.length_edges
            or len(other.vector_sum) != len(self.vector_sum)
        ):
            raise ValueError("windows of different baselines cannot be added")
        self.documents += other.documents
        self.confidence_counts += other.confidence_counts
        self.confidence_sum += other.confidence_sum
        self.label_counts += other.label_counts
        self.length_counts += other.length_counts
        self.length_sum += other.length_sum
        self.vectors += other.vectors
        self.featureless += other.featureless
        self.vector_sum += other.vector_sum

    def copy(self) -> Window:
        """Return an independent copy."""
        out = Window(
            labels=self.labels,
            confidence_edges=self.confidence_edges,
            length_edges=self.length_edges,
            centroid=self.centroid,
        )
        out.add(self)
        return out


class RollingWindow:
    """The most recent documents of a stream, at most ``max_documents``, in bounded memory.

    Documents go into a bucket of about a tenth of the window; full buckets are kept, and the
    oldest dropped while the rest still exceed the limit. So the window covers the latest
    ``max_documents`` minus at most a bucket and a micro-batch (a micro-batch is never split:
    with a window smaller than one, it holds the latest micro-batch).
    """

    def __init__(self, baseline: Baseline, *, max_documents: int, buckets: int = 10) -> None:
        """Start empty; buckets hold about ``max_documents / buckets`` documents each."""
        if max_documents < 1 or buckets < 1:
            raise ValueError("max_documents and buckets must be at least 1")
        self.baseline = baseline
        self.max_documents = max_documents
        self._bucket_size = max(1, math.ceil(max_documents / buckets))
        self._closed: deque[Window] = deque()
        self._open = baseline.window()

    @property
    def documents(self) -> int:
        """How many documents the window holds now."""
        return self._open.documents + sum(w.documents for w in self._closed)

    def add(self, window: Window) -> None:
        """Count a micro-batch's window in, dropping the oldest documents beyond the limit."""
        self._open.add(window)
        if self._open.documents >= self._bucket_size:
            self._closed.append(self._open)
            self._open = self.baseline.window()
        # Drop the oldest buckets beyond the limit, but never the only documents there are.
        while (
            self._closed
            and self.documents > self.max_documents
            and (len(self._closed) > 1 or self._open.documents)
        ):
            self._closed.popleft()

    def snapshot(self) -> Window:
        """Return the window's documents merged into one (a copy)."""
        merged = self._open.copy()
        for bucket in self._closed:
            merged.add(bucket)
        return merged


# --- comparison -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signal:
    """One drift signal: its value (PSI or distance), the limit, and what that means."""

    name: str
    value: float | None
    limit: float | None
    documents: int
    status: Status
    detail: str


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Every signal of a window against a baseline; ``reason`` says why none is available."""

    documents: int
    baseline_documents: int
    featureless: int
    signals: tuple[Signal, ...]
    thresholds: DriftThresholds
    predictions: str = ""
    reason: str = ""

    @property
    def status(self) -> Status:
        """Drift if any signal drifted; ok if all are ok; otherwise insufficient/unavailable."""
        statuses = {s.status for s in self.signals}
        if not statuses or statuses == {Status.UNAVAILABLE}:
            return Status.UNAVAILABLE
        if Status.DRIFT in statuses:
            return Status.DRIFT
        if statuses <= {Status.OK, Status.UNAVAILABLE}:
            return Status.OK
        return Status.INSUFFICIENT

    def signal(self, name: str) -> Signal:
        """Return the signal called ``name``; KeyError if there is none."""
        for s in self.signals:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready built-in types."""
        return {
            "status": self.status.value,
            "documents": self.documents,
            "baseline_documents": self.baseline_documents,
            "featureless": self.featureless,
            "reason": self.reason,
            "signals": [
                {
                    "name": s.name,
                    "value": s.value,
                    "limit": s.limit,
                    "documents": s.documents,
                    "status": s.status.value,
                    "detail": s.detail,
                }
                for s in self.signals
            ],
        }


def unavailable_report(reason: str, thresholds: DriftThresholds | None = None) -> DriftReport:
    """Return a report that says drift cannot be judged, and why."""
    return DriftReport(
        documents=0,
        baseline_documents=0,
        featureless=0,
        signals=tuple(Signal(name, None, None, 0, Status.UNAVAILABLE, reason) for name in SIGNALS),
        thresholds=thresholds or DriftThresholds(),
        reason=reason,
    )


def _judge(value: float | None, limit: float, documents: int, minimum: int) -> Status:
    """Drift above the limit, ok within it, insufficient with too few documents."""
    if value is None or documents < minimum:
        return Status.INSUFFICIENT
    return Status.DRIFT if value > limit else Status.OK


def _psi_signal(
    name: str,
    expected: np.ndarray,
    actual: np.ndarray,
    *,
    documents: int,
    thresholds: DriftThresholds,
    detail: str,
) -> Signal:
    """A PSI signal of one histogram pair."""
    value = psi(expected, actual) if documents else None
    status = _judge(value, thresholds.max_psi, documents, thresholds.min_documents)
    if status is Status.INSUFFICIENT:
        detail = f"{documents} documents, at least {thresholds.min_documents} needed; {detail}"
    return Signal(name, value, thresholds.max_psi, documents, status, detail)


def _shares(counts: np.ndarray) -> np.ndarray:
    """Counts as shares of their total (zeros for an empty histogram)."""
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))


def _label_detail(baseline: Baseline, window: Window) -> str:
    """Name the label whose share moved most."""
    before, after = _shares(baseline.label_counts), _shares(window.label_counts)
    if not window.documents:
        return "no live predictions"
    i = int(np.argmax(np.abs(after - before)))
    return (
        f"largest change: {baseline.labels[i]} {before[i]:.1%} in the baseline, {after[i]:.1%} live"
    )


def _centroid_signal(baseline: Baseline, window: Window, thresholds: DriftThresholds) -> Signal:
    """The distance of the live centroid, judged against the spread and the sampling noise."""
    centroid = baseline.centroid
    if centroid is None:
        return Signal(
            CENTROID, None, None, 0, Status.UNAVAILABLE, "the baseline has no feature centroid"
        )
    n = window.vectors
    if n == 0:
        return Signal(
            CENTROID,
            None,
            None,
            0,
            Status.INSUFFICIENT,
            f"no feature vectors observed; at least {thresholds.min_documents} needed",
        )
    value = centroid.distance(window.vector_sum)
    limit = centroid.limit(n, thresholds)
    status = _judge(value, limit, n, thresholds.min_documents)
    detail = (
        f"limit {thresholds.distance_factor:g} x spread {centroid.spread:.3f} + "
        f"{thresholds.noise_allowance:g} x {centroid.expected_distance(n):.3f} "
        f"(chance distance of {n} training-like documents)"
    )
    if status is Status.INSUFFICIENT:
        detail = f"{n} documents, at least {thresholds.min_documents} needed; {detail}"
    return Signal(CENTROID, value, limit, n, status, detail)


def compare(
    baseline: Baseline, window: Window, thresholds: DriftThresholds | None = None
) -> DriftReport:
    """Compare a live window with the baseline it was counted against."""
    thresholds = thresholds or DriftThresholds()
    if (
        window.labels != baseline.labels
        or window.confidence_edges != baseline.confidence_edges
        or window.length_edges != baseline.length_edges
    ):
        raise ValueError("the window was not counted against this baseline")
    n = window.documents
    live_confidence = _number(window.confidence_sum / n if n else None)
    live_length = _number(window.length_sum / n if n else None, ".0f")
    signals = (
        _psi_signal(
            CONFIDENCE,
            baseline.confidence_counts,
            window.confidence_counts,
            documents=n,
            thresholds=thresholds,
            detail=f"mean confidence {baseline.confidence_mean:.3f} in the baseline, "
            f"{live_confidence} live",
        ),
        _psi_signal(
            LABEL,
            baseline.label_counts,
            window.label_counts,
            documents=n,
            thresholds=thresholds,
            detail=_label_detail(baseline, window),
        ),
        _psi_signal(
            LENGTH,
            baseline.length_counts,
            window.length_counts,
            documents=n,
            thresholds=thresholds,
            detail=f"mean length {baseline.length_mean:.0f} characters in the baseline, "
            f"{live_length} live",
        ),
        _centroid_signal(baseline, window, thresholds),
    )
    return DriftReport(
        documents=n,
        baseline_documents=baseline.documents,
        featureless=window.featureless,
        signals=signals,
        thresholds=thresholds,
        predictions=baseline.predictions,
    )


# --- the classifier's monitor -------------------------------------------------------------------


class DriftMonitor:
    """Rolling windows of live scoring, one per (model version, role), and their reports.

    Not thread-safe: create batch windows anywhere, but ``add`` and ``reports`` from one
    thread (the classifier's event loop).
    """

    def __init__(self, *, max_documents: int, thresholds: DriftThresholds | None = None) -> None:
        """Keep at most ``max_documents`` per window; judge them by ``thresholds``."""
        self.max_documents = max_documents
        self.thresholds = thresholds or DriftThresholds()
        self._baselines: dict[str, Baseline | BaselineUnavailableError] = {}
        self._windows: dict[tuple[str, str], RollingWindow] = {}

    def baseline(self, version: str, metadata: Mapping[str, Any]) -> Baseline | None:
        """The model's baseline, read once per version; None when it has none."""
        known = self._baselines.get(version)
        if known is None:
            try:
                known = Baseline.from_metadata(metadata)
            except BaselineUnavailableError as exc:
                known = exc
            self._baselines[version] = known
        return known if isinstance(known, Baseline) else None

    def unavailable(self, version: str) -> str | None:
        """Why a version seen before has no baseline; None if it has one or was not seen."""
        known = self._baselines.get(version)
        return str(known) if isinstance(known, BaselineUnavailableError) else None

    def batch_window(self, version: str, metadata: Mapping[str, Any]) -> Window | None:
        """An empty window for one micro-batch scored by this model; None without a baseline."""
        baseline = self.baseline(version, metadata)
        return None if baseline is None else baseline.window()

    def add(self, version: str, role: str, window: Window) -> None:
        """Count a micro-batch's window into the rolling window of (version, role).

        A window of a version ``reports`` has forgotten (it stopped serving while the batch
        was scored) is dropped.
        """
        key = (version, role)
        rolling = self._windows.get(key)
        if rolling is None:
            baseline = self._baselines.get(version)
            if not isinstance(baseline, Baseline):
                return  # forgotten meanwhile by ``reports``: the model no longer serves
            rolling = RollingWindow(baseline, max_documents=self.max_documents)
            self._windows[key] = rolling
        rolling.add(window)

    def reports(
        self, serving: Iterable[tuple[str, str, Mapping[str, Any]]]
    ) -> dict[tuple[str, str], DriftReport]:
        """Report on every (version, role, metadata) serving now that has a baseline.

        Windows of models no longer serving are dropped, so labels stay bounded.
        """
        out: dict[tuple[str, str], DriftReport] = {}
        current = {(version, role): metadata for version, role, metadata in serving}
        for key in list(self._windows):
            if key not in current:
                del self._windows[key]
        for version in list(self._baselines):
            if version not in {v for v, _ in current}:
                del self._baselines[version]
        for (version, role), metadata in current.items():
            baseline = self.baseline(version, metadata)
            if baseline is None:
                continue
            rolling = self._windows.get((version, role))
            window = rolling.snapshot() if rolling is not None else baseline.window()
            out[(version, role)] = compare(baseline, window, self.thresholds)
        return out


# --- presentation -------------------------------------------------------------------------------


def _number(value: float | None, spec: str = ".3f") -> str:
    """Format an optional number; None shows as '-'."""
    return "-" if value is None else f"{value:{spec}}"


def render_table(report: DriftReport) -> str:
    """Return a plain-text report: one row per signal, why, then the window and the status."""
    if report.status is Status.UNAVAILABLE and report.reason:
        return f"drift: unavailable — {report.reason}\n"
    rows = [["signal", "value", "limit", "documents", "status"]]
    rows += [
        [s.name, _number(s.value), _number(s.limit), str(s.documents), s.status.value]
        for s in report.signals
    ]
    details = [f"{s.name}: {s.detail}" for s in report.signals]
    window = (
        f"window: {report.documents} documents"
        + (
            f" ({report.featureless} sharing no feature with the baseline centroid)"
            if report.featureless
            else ""
        )
        + f"; baseline: {report.baseline_documents} training documents ({report.predictions})"
    )
    drifted = [s.name for s in report.signals if s.status is Status.DRIFT]
    status = f"status: {report.status.value}"
    if drifted:
        status += f" — {', '.join(drifted)}"
    return "\n".join([*grid(rows), "", *details, "", window, status]) + "\n"


def _length_label(low: float, high: float | None) -> str:
    """Name a length bin [low, high) compactly: '256-512', '1k-2k', '128k+'."""

    def short(value: float) -> str:
        """1024 and up in k."""
        return f"{int(value) // 1024}k" if value >= 1024 else str(int(value))

    return f"{short(low)}+" if high is None else f"{short(low)}-{short(high)}"


def _title(signal: Signal, what: str) -> str:
    """A picture's title line: the signal's value against its limit, and its status."""
    if signal.value is None:
        return f"{what}: {signal.status.value}"
    return f"{what}: {signal.status.value} ({_number(signal.value)}, limit {_number(signal.limit)})"


def _overlaid(
    path: Path,
    *,
    categories: Sequence[str],
    baseline: np.ndarray,
    live: np.ndarray,
    live_documents: int,
    baseline_documents: int,
    xlabel: str,
    title: str,
    side_by_side: bool,
) -> Path:
    """Draw baseline and live shares per category, overlaid or side by side."""
    from matplotlib import style

    positions = np.arange(len(categories))
    with style.context("default"):
        figure = new_figure()
        axes = figure.add_subplot()
        if side_by_side:
            width = 0.4
            axes.bar(positions - width / 2, baseline, width=width, color="tab:blue")
            axes.bar(positions + width / 2, live, width=width, color="tab:orange")
        else:
            axes.bar(positions, baseline, width=0.9, color="tab:blue", alpha=0.55)
            axes.bar(positions, live, width=0.9, color="tab:orange", alpha=0.55)
        axes.legend(
            [
                f"baseline ({baseline_documents} training documents)",
                f"live ({live_documents} documents)",
            ],
            loc="upper left",
        )
        rotation = 0 if len(categories) <= 6 else 45
        axes.set_xticks(
            positions,
            labels=list(categories),
            rotation=rotation,
            ha="right" if rotation else "center",
            rotation_mode="anchor",
        )
        top = max(float(baseline.max(initial=0.0)), float(live.max(initial=0.0)))
        axes.set_ylim(0.0, max(0.05, min(1.0, top * 1.2)))
        axes.set_ylabel("share of documents")
        axes.set_xlabel(xlabel)
        axes.set_title(title)
        return save_png(figure, path)


def _centroid_png(path: Path, baseline: Baseline, report: DriftReport, title: str) -> Path:
    """Draw the live centroid's distance as a bar, with its limit and the baseline spread."""
    from matplotlib import style

    signal = report.signal(CENTROID)
    centroid = baseline.centroid
    with style.context("default"):
        figure = new_figure()
        axes = figure.add_subplot()
        if centroid is None or signal.value is None or signal.limit is None:
            axes.text(0.5, 0.5, signal.detail, ha="center", va="center", wrap=True)
            axes.set_axis_off()
        else:
            colour = "tab:red" if signal.status is Status.DRIFT else "tab:green"
            if signal.status is Status.INSUFFICIENT:
                colour = "tab:grey"
            chance = centroid.expected_distance(signal.documents)
            axes.barh(
                [0],
                [signal.value],
                height=0.5,
                color=colour,
                label=f"live centroid distance {signal.value:.3f}",
            )
            axes.axvline(
                signal.limit,
                color="black",
                linestyle="--",
                linewidth=2,
                label=f"limit {signal.limit:.3f}",
            )
            axes.axvline(
                centroid.spread,
                color="tab:blue",
                linestyle=":",
                linewidth=2,
                label=f"baseline spread {centroid.spread:.3f} (a training document's mean)",
            )
            axes.axvline(
                chance,
                color="tab:grey",
                linestyle="-.",
                linewidth=1.5,
                label=f"chance distance of {signal.documents} training-like documents {chance:.3f}",
            )
            axes.legend(loc="upper right")
            axes.set_xlim(0.0, max(1.0, signal.value * 1.1))
            axes.set_ylim(-0.6, 1.4)
            axes.set_yticks([0], labels=[f"live\n({signal.documents} documents)"])
            axes.set_xlabel("cosine distance to the baseline centroid")
        axes.set_title(title)
        return save_png(figure, path)


def drift_pngs(
    baseline: Baseline,
    window: Window,
    out_dir: Path,
    *,
    report: DriftReport | None = None,
    title: str = "",
) -> list[Path]:
    """Write the drift pictures into ``out_dir`` and return their paths.

    drift-confidence.png and drift-length.png overlay the baseline and live histograms,
    drift-labels.png puts the label shares side by side, and drift-centroid.png shows the
    live centroid distance against its limit.
    """
    report = report or compare(baseline, window)
    prefix = f"{title}\n" if title else ""
    edges = baseline.confidence_edges
    confidence_bins = [f"{lo:.1f}-{hi:.1f}" for lo, hi in itertools.pairwise(edges)]
    lengths = baseline.length_edges
    length_bins = [
        _length_label(lo, hi if i < len(lengths) - 2 else None)
        for i, (lo, hi) in enumerate(itertools.pairwise(lengths))
    ]
    common = {"live_documents": window.documents, "baseline_documents": baseline.documents}
    return [
        _overlaid(
            out_dir / PNG_FILES[CONFIDENCE],
            categories=confidence_bins,
            baseline=_shares(baseline.confidence_counts),
            live=_shares(window.confidence_counts),
            xlabel="top-class confidence",
            title=prefix + _title(report.signal(CONFIDENCE), "confidence PSI"),
            side_by_side=False,
            **common,
        ),
        _overlaid(
            out_dir / PNG_FILES[LENGTH],
            categories=length_bins,
            baseline=_shares(baseline.length_counts),
            live=_shares(window.length_counts),
            xlabel="text length (characters, log-spaced bins)",
            title=prefix + _title(report.signal(LENGTH), "length PSI"),
            side_by_side=False,
            **common,
        ),
        _overlaid(
            out_dir / PNG_FILES[LABEL],
            categories=list(baseline.labels),
            baseline=_shares(baseline.label_counts),
            live=_shares(window.label_counts),
            xlabel="predicted label",
            title=prefix + _title(report.signal(LABEL), "label PSI"),
            side_by_side=True,
            **common,
        ),
        _centroid_png(
            out_dir / PNG_FILES[CENTROID],
            baseline,
            report,
            prefix + _title(report.signal(CENTROID), "centroid distance"),
        ),
    ]
