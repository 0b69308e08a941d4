"""Where training documents sit in a model's feature space (TF-IDF or embedding vectors)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from triage_ml.drift.comparison import DriftThresholds

# A TF-IDF vocabulary can run to hundreds of thousands of terms; the centroid keeps the
# components that carry most of the mean vector, so metadata.json and each window stay small.
MAX_CENTROID_COMPONENTS = 1024


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
