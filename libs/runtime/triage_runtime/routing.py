"""The routing policy and the decision it implies: one place, pure, for every caller.

The classifier applies a policy's thresholds when it scores (and names the policy version in
the event), and says which model scores which partition; the router, the canary report and
replay turn a classified event into a decision with ``decide``. docs/model-operations.md.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from triage_contracts import (
    Action,
    DecidedBy,
    DocumentClassifiedV1,
    DocumentRoutedV1,
    ExtractionStatus,
    ModelRole,
    Prediction,
    Producer,
)


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """Per-label thresholds by model version, the canary's partitions, the shadow's sample,
    the time a review item is due in, the quality sample and the target precision.

    ``version`` is None for the default policy (nothing stored yet): the models' own
    thresholds, no canary traffic, no shadow scoring, reviews due in four hours, no quality
    sample, a target precision of 95 %.

    ``quality_sample`` is the share of confidently routed documents that also go to blind
    review; their decisions measure the live precision of each label, held to
    ``target_precision``.
    """

    version: int | None = None
    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    canary_partitions: frozenset[int] = frozenset()
    shadow_sample: float = 0.0
    review_sla_hours: float = 4.0
    quality_sample: float = 0.0
    target_precision: float = 0.95

    @property
    def review_sla(self) -> timedelta:
        """How long after receipt a review item is due."""
        return timedelta(hours=self.review_sla_hours)

    def threshold(self, model_version: str, label: str) -> float | None:
        """The policy's threshold for ``label`` under ``model_version``; None: the model's."""
        return self.thresholds.get(model_version, {}).get(label)

    def apply(self, model_version: str, prediction: Prediction) -> Prediction:
        """``prediction`` with this policy's threshold for its label, and the action it implies."""
        threshold = self.threshold(model_version, prediction.label)
        if threshold is None or threshold == prediction.threshold:
            return prediction
        action = Action.ROUTE if prediction.confidence >= threshold else Action.REVIEW
        return prediction.model_copy(update={"threshold": threshold, "action": action})

    def role_for(self, partition: int, *, has_canary: bool) -> ModelRole:
        """Which model scores a documents-topic partition: the canary on its partitions."""
        if has_canary and partition in self.canary_partitions:
            return ModelRole.CANARY
        return ModelRole.CHAMPION

    def in_shadow_sample(self, document_id: str) -> bool:
        """Whether the shadow also scores a document; the same id always gets the same answer.

        A document id's hex digits are uniform, so the share sampled is ``shadow_sample``.
        """
        return _in_share(document_id[4:12], self.shadow_sample)

    def in_quality_sample(self, document_id: str) -> bool:
        """Whether a confidently routed document also goes to blind review; the same id
        always gets the same answer, independent of the shadow sample (other digits)."""
        return _in_share(document_id[12:20], self.quality_sample)


def _in_share(hex_digits: str, share: float) -> bool:
    """Whether eight uniform hex digits fall in the lowest ``share`` of their range."""
    if share >= 1.0:
        return True
    if share <= 0.0:
        return False
    return int(hex_digits, 16) < share * float(16 ** len(hex_digits))


DEFAULT_POLICY = RoutingPolicy()


class ReviewReason(enum.StrEnum):
    """Why a document needs a human."""

    LOW_CONFIDENCE = "low_confidence"
    EXTRACTION_FAILED = "extraction_failed"
    ENCRYPTED = "encrypted"
    MODEL_UNAVAILABLE = "model_unavailable"
    QUALITY_SAMPLE = "quality_sample"
    """Routed confidently and also sampled for blind review (live precision)."""


@dataclass(frozen=True, slots=True)
class SendToReview:
    """Open a review item for the document."""

    reason: ReviewReason
    priority: int
    due_at: datetime


@dataclass(frozen=True, slots=True)
class RouteTo:
    """Send the document to ``queue`` without a human.

    ``quality_sample``, when set, is the blind review item also opened for it: the document
    is in the policy's quality sample (docs/review.md).
    """

    queue: str
    decided_by: DecidedBy
    confidence: float
    quality_sample: SendToReview | None = None


Decision = RouteTo | SendToReview

PRIORITY_HIGH = 1
PRIORITY_NORMAL = 2


def decide(event: DocumentClassifiedV1, policy: RoutingPolicy) -> Decision:
    """Where a classified document goes under ``policy`` (the one the event names); the same
    event always gets the same answer.

    The prediction's threshold and action were set under that policy when it was scored,
    so every reader of the event decides alike, whenever it reads it. A document the model
    routes that falls in the policy's quality sample is routed and also reviewed, blind:
    its review item looks like a low-confidence one (same priority, same due time).
    """
    due_at = event.document.received_at + policy.review_sla
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
    if prediction.action is Action.ROUTE:
        sampled = not by_rules and policy.in_quality_sample(event.document_id)
        return RouteTo(
            queue=prediction.label,
            decided_by=DecidedBy.RULES if by_rules else DecidedBy.MODEL,
            confidence=prediction.confidence,
            quality_sample=(
                SendToReview(ReviewReason.QUALITY_SAMPLE, priority=PRIORITY_NORMAL, due_at=due_at)
                if sampled
                else None
            ),
        )
    # A rules score below its threshold means no trained model was available.
    reason = ReviewReason.MODEL_UNAVAILABLE if by_rules else ReviewReason.LOW_CONFIDENCE
    return SendToReview(reason=reason, priority=PRIORITY_NORMAL, due_at=due_at)


def routed_event(
    event: DocumentClassifiedV1,
    decision: RouteTo,
    *,
    producer: Producer,
    supersedes: uuid.UUID | None = None,
) -> DocumentRoutedV1:
    """The DocumentRouted that announces ``decision`` for a classified document (replacing
    the routing ``supersedes`` names, when a replay moves it)."""
    return DocumentRoutedV1(
        producer=producer,
        document_id=event.document_id,
        trace_id=event.trace_id,
        model=event.model,
        queue=decision.queue,
        decided_by=decision.decided_by,
        confidence=decision.confidence,
        document=event.document,
        supersedes_event_id=supersedes,
    )
