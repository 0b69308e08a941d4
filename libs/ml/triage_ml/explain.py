"""Why a model predicted a label: one explainer per model kind (docs/models.md#explanations).

tfidf-lr and tfidf-embed-lr: each TF-IDF term of the document times the served fold models'
coefficients for the label minus the runner-up's, averaged over the folds: the term's share of
the label's logit margin. The terms that pushed most toward the label are kept, and the one
that pushed most toward the runner-up. embed-lr, rules and artifacts trained before the fold
ensemble have no explainer (``explainer_for`` gives None).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from triage_contracts import Explanation, TermWeight
from triage_contracts.events import MAX_EXPLANATION_TERMS, MAX_TERM_CHARS

WEIGHT_DECIMALS = 4


@dataclass(frozen=True)
class TermExplainer:
    """Explains rows of a feature matrix whose first ``len(terms)`` columns are TF-IDF terms."""

    terms: np.ndarray
    """Term of each TF-IDF column (the vectorizer's vocabulary, by column)."""
    weights: np.ndarray
    """Mean over the fold models of each label's coefficients on the TF-IDF columns
    (labels x terms), a binary model's one row ``w`` taken as ``(-w/2, w/2)``."""
    usable: np.ndarray
    """Whether each column's term fits the contract (at most ``MAX_TERM_CHARS``)."""

    def explain(
        self, features: Any, probabilities: np.ndarray, labels: Sequence[str]
    ) -> list[Explanation]:
        """One explanation per row of ``features`` (a SciPy sparse matrix, as scored)."""
        rows = features.tocsr()
        order = np.argsort(-probabilities, axis=1, kind="stable")
        out = []
        for i in range(rows.shape[0]):
            best, runner = int(order[i, 0]), int(order[i, 1])
            start, end = rows.indptr[i], rows.indptr[i + 1]
            columns = rows.indices[start:end]
            keep = columns < len(self.terms)  # a feature union's embedding columns follow
            columns = columns[keep]
            values = np.asarray(rows.data[start:end])[keep]
            margin = values * (self.weights[best, columns] - self.weights[runner, columns])
            out.append(
                Explanation(
                    label=labels[best],
                    versus=labels[runner],
                    terms=self._strongest(columns, margin),
                )
            )
        return out

    def _strongest(self, columns: np.ndarray, margin: np.ndarray) -> tuple[TermWeight, ...]:
        """Up to nine terms toward the label, strongest first, then the strongest against."""
        rounded = np.round(margin, WEIGHT_DECIMALS)
        keep = self.usable[columns]
        columns, rounded = columns[keep], rounded[keep]
        # Ties are broken by the column, which is the term's alphabetical place (the
        # vectorizer sorts its vocabulary), so the same document always gets the same list.
        toward = rounded > 0
        first = np.lexsort((columns[toward], -rounded[toward]))[: MAX_EXPLANATION_TERMS - 1]
        against = rounded < 0
        strongest = np.lexsort((columns[against], rounded[against]))[:1]
        picked = [(columns[toward][i], rounded[toward][i]) for i in first]
        picked += [(columns[against][i], rounded[against][i]) for i in strongest]
        return tuple(TermWeight(term=str(self.terms[c]), weight=float(w)) for c, w in picked)


def terms_text(explanation: Explanation | None) -> str | None:
    """An explanation as one column of ``triage batch score``'s output: ``term +weight`` pairs,
    toward the label first, ``; ``-separated; None without one."""
    if explanation is None:
        return None
    return "; ".join(f"{t.term} {t.weight:+.4f}" for t in explanation.terms)


def _label_weights(estimators: Sequence[Any], labels: Sequence[str], columns: int) -> np.ndarray:
    """Mean over ``estimators`` of their coefficients on the first ``columns`` features, one
    row per label in ``labels`` order (a label a fold model never saw: zeros)."""
    index = {label: i for i, label in enumerate(labels)}
    total = np.zeros((len(labels), columns), dtype=np.float64)
    for estimator in estimators:
        coef = np.asarray(estimator.coef_, dtype=np.float64)[:, :columns]
        classes = [str(c) for c in estimator.classes_]
        if coef.shape[0] == 1:  # binary: one score s, taken as the logits (-s/2, s/2)
            rows = {classes[0]: -coef[0] / 2, classes[1]: coef[0] / 2}
        else:
            rows = {c: coef[k] for k, c in enumerate(classes)}
        for label, row in rows.items():
            total[index[label]] += row
    return total / len(estimators)


def explainer_for(kind: str, pipeline: Any, labels: Sequence[str]) -> TermExplainer | None:
    """The explainer of a fitted pipeline of ``kind``, or None when the kind has none."""
    from triage_ml.calibration import CalibratedLinearClassifier
    from triage_ml.model import KIND_TFIDF_EMBED_LR, KIND_TFIDF_LR

    steps = getattr(pipeline, "named_steps", {})
    classifier = steps.get("clf")
    if kind not in (KIND_TFIDF_LR, KIND_TFIDF_EMBED_LR):
        return None
    if not isinstance(classifier, CalibratedLinearClassifier):
        return None  # an artifact from before the fold ensemble: CalibratedClassifierCV
    features = steps["features"]
    # A feature union (tfidf-embed-lr) puts its TF-IDF block first.
    tfidf = dict(getattr(features, "transformer_list", [])).get("tfidf", features)
    vocabulary: dict[str, int] = tfidf.vocabulary_
    terms = np.empty(len(vocabulary), dtype=object)
    for term, column in vocabulary.items():
        terms[column] = term
    return TermExplainer(
        terms=terms,
        weights=_label_weights(classifier.estimators, labels, len(vocabulary)),
        usable=np.array([len(term) <= MAX_TERM_CHARS for term in terms], dtype=bool),
    )
