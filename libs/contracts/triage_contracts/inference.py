"""The inference contract shared by the Kafka path, the HTTP endpoint and batch scoring."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from triage_contracts.events import (
    Contract,
    DocumentId,
    Explanation,
    Extraction,
    ModelRef,
    Prediction,
    check_explanation,
)

MAX_TEXT_CHARS = 200_000
"""The longest text the model is given; longer text is cut to this many characters."""


class ClassifyRequestV1(Contract):
    """Text to classify synchronously."""

    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
    document_id: DocumentId | None = None


class ClassifyResponseV1(Contract):
    """The answer to a classify request: the same Prediction the streaming path emits."""

    document_id: DocumentId | None = None
    model: ModelRef
    extraction: Extraction
    prediction: Prediction
    latency_ms: Annotated[float, Field(ge=0.0)]
    explanation: Explanation | None = None
    """The terms behind the prediction, as on ``DocumentClassified`` (None for model kinds
    without them)."""

    @model_validator(mode="after")
    def _explanation_fits(self) -> ClassifyResponseV1:
        check_explanation(self.prediction, self.explanation)
        return self
