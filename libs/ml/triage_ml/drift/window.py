"""Live documents counted into a baseline's bins: per micro-batch, and rolling over a stream."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from triage_ml.drift.baseline import Baseline
    from triage_ml.drift.centroid import Centroid


def histogram(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Count values into bins [edges[i], edges[i+1]); the first and last bins are open-ended."""
    bins = len(edges) - 1
    index = np.clip(np.searchsorted(np.asarray(edges), values, side="right") - 1, 0, bins - 1)
    return np.bincount(index, minlength=bins).astype(np.int64)


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
        confidence_counts = histogram(confidence_array, self.confidence_edges)
        length_counts = histogram(length_array, self.length_edges)
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
