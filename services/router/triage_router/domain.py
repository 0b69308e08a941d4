"""What the router decides: a queue for confident scores, the review queue for the rest."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from triage_contracts import Action, DecidedBy, DocumentClassifiedV1, ExtractionStatus, ModelRole


class ReviewReason(enum.StrEnum):
    """Why a document needs a human."""

    LOW_CONFIDENCE = "low_confidence"
    EXTRACTION_FAILED = "extraction_failed"
    ENCRYPTED = "encrypted"
    MODEL_UNAVAILABLE = "model_unavailable"


@dataclass(frozen=True, slots=True)
class RouteTo:
    """Send the document to ``queue`` without a human."""

    queue: str
    decided_by: DecidedBy
    confidence: float


@dataclass(frozen=True, slots=True)
class SendToReview:
    """Open a review item for the document."""

    reason: ReviewReason
    priority: int
    due_at: datetime


Decision = RouteTo | SendToReview

PRIORITY_HIGH = 1
PRIORITY_NORMAL = 2


def decide(
    event: DocumentClassifiedV1,
    *,
    review_sla: timedelta,
    thresholds: Mapping[str, float] | None = None,
) -> Decision:
    """Decide where a classified document goes; the same event always gets the same answer.

    ``thresholds`` override the model's per-label thresholds (router configuration).
    """
    due_at = event.document.received_at + review_sla
    prediction = event.prediction
    if prediction is None:
        reason = (
            ReviewReason.ENCRYPTED
            if event.extraction.status is ExtractionStatus.ENCRYPTED
            else ReviewReason.EXTRACTION_FAILED
        )
        # Nothing can route these automatically, so a human should see them first.
        return SendToReview(reason=reason, priority=PRIORITY_HIGH, due_at=due_at)
    by_rules = event.model.role is ModelRole.RULES
    threshold = thresholds.get(prediction.label) if thresholds else None
    confident = (
        prediction.confidence >= threshold
        if threshold is not None
        else prediction.action is Action.ROUTE
    )
    if confident:
        return RouteTo(
            queue=prediction.label,
            decided_by=DecidedBy.RULES if by_rules else DecidedBy.MODEL,
            confidence=prediction.confidence,
        )
    # A rules score below its threshold means no trained model was available.
    reason = ReviewReason.MODEL_UNAVAILABLE if by_rules else ReviewReason.LOW_CONFIDENCE
    return SendToReview(reason=reason, priority=PRIORITY_NORMAL, due_at=due_at)
