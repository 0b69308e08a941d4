"""What a model scored over a window, and what people decided on it: threshold tuning's input.

Read only. A document counts once, under the label the model predicted: its routing decision
(routed by the model) or its review item (sent to review below the threshold, or drawn as a
quality sample), whichever there is; a quality sample may have both.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import literal, select, union_all
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncEngine

from triage_contracts import DecidedBy
from triage_runtime.db.models import DocumentOutcome, ReviewItem, RoutingDecision
from triage_runtime.policy_store import PolicyStore
from triage_runtime.routing import ReviewReason
from triage_runtime.threshold_tuning import Reviewed

TUNING_REASONS = (ReviewReason.LOW_CONFIDENCE.value, ReviewReason.QUALITY_SAMPLE.value)


@dataclass(slots=True)
class LabelEvidence:
    """One label's decisions (weighted) and the confidences of all its predictions."""

    reviewed: list[Reviewed] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    unweighted: int = 0
    """Quality samples left out: no policy they were drawn under had a quality sample share."""


async def read_evidence(
    engine: AsyncEngine, *, model_version: str, since: datetime
) -> dict[str, LabelEvidence]:
    """Per predicted label, what ``model_version`` scored since ``since`` and what people
    decided on it.

    A low-confidence decision stands for itself. A quality sample stands for 1/share routed
    documents, the share being the quality sample of the policy version the document was
    scored under (``document_outcome.policy_version``), or of the policy in force when that
    version is unknown or had none.
    """
    by_label: dict[str, LabelEvidence] = defaultdict(LabelEvidence)
    async with engine.connect() as conn:
        decided = (
            await conn.execute(
                select(
                    ReviewItem.predicted_label,
                    ReviewItem.confidence,
                    ReviewItem.decided_label,
                    ReviewItem.reason,
                    DocumentOutcome.policy_version,
                )
                .outerjoin(DocumentOutcome, DocumentOutcome.document_id == ReviewItem.document_id)
                .where(
                    ReviewItem.status == "decided",
                    ReviewItem.model_version == model_version,
                    ReviewItem.reason.in_(TUNING_REASONS),
                    ReviewItem.predicted_label.is_not(None),
                    ReviewItem.confidence.is_not(None),
                    ReviewItem.created_at >= since,
                )
            )
        ).all()
        scored = union_all(
            select(
                RoutingDecision.document_id,
                RoutingDecision.queue.label("label"),
                RoutingDecision.confidence,
                literal(0).label("source"),
            ).where(
                RoutingDecision.decided_by == DecidedBy.MODEL.value,
                RoutingDecision.model_version == model_version,
                RoutingDecision.confidence.is_not(None),
                RoutingDecision.created_at >= since,
            ),
            select(
                ReviewItem.document_id,
                ReviewItem.predicted_label.label("label"),
                ReviewItem.confidence,
                literal(1).label("source"),
            ).where(
                ReviewItem.model_version == model_version,
                ReviewItem.reason.in_(TUNING_REASONS),
                ReviewItem.predicted_label.is_not(None),
                ReviewItem.confidence.is_not(None),
                ReviewItem.created_at >= since,
            ),
        ).subquery()
        documents = await conn.execute(
            select(scored.c.label, scored.c.confidence)
            .ext(distinct_on(scored.c.document_id))
            .order_by(scored.c.document_id, scored.c.source)
        )
        for label, confidence in documents:
            by_label[label].confidences.append(float(confidence))
    store = PolicyStore(engine)
    in_force = (await store.current()).quality_sample
    named = await store.get_many({row.policy_version for row in decided if row.policy_version})
    for label, confidence, decided_label, reason, policy_version in decided:
        if label is None or confidence is None:
            continue  # excluded by the query; typed as nullable columns
        evidence = by_label[label]
        weight = 1.0
        if reason == ReviewReason.QUALITY_SAMPLE.value:
            policy = named.get(policy_version) if policy_version is not None else None
            share = policy.quality_sample if policy and policy.quality_sample > 0 else in_force
            if share <= 0:
                evidence.unweighted += 1
                continue
            weight = 1.0 / share
        evidence.reviewed.append(
            Reviewed(
                confidence=float(confidence),
                correct=decided_label == label,
                weight=weight,
                sampled=reason == ReviewReason.QUALITY_SAMPLE.value,
            )
        )
    return dict(by_label)
