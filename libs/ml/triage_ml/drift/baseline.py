"""What training stores for drift: histograms and the feature centroid, in the model's metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from triage_ml.drift.centroid import MAX_CENTROID_COMPONENTS, Centroid
from triage_ml.drift.window import Window, histogram

BASELINE_FORMAT = 1
METADATA_KEY = "drift_baseline"
CONFIDENCE_EDGES: tuple[float, ...] = tuple(i / 10 for i in range(11))
# Characters: [0, 32), [32, 64), ... [65536, 131072), [131072, ...): the last bin is open.
LENGTH_EDGES: tuple[float, ...] = (0.0, *(float(2**k) for k in range(5, 18)))


class BaselineUnavailableError(LookupError):
    """The model carries no usable drift baseline; the message says why."""


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
            confidence_counts=histogram(confidence, CONFIDENCE_EDGES),
            confidence_mean=float(confidence.mean()),
            label_counts=np.bincount(probabilities.argmax(axis=1), minlength=len(labels)),
            length_edges=LENGTH_EDGES,
            length_counts=histogram(lengths, LENGTH_EDGES),
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
