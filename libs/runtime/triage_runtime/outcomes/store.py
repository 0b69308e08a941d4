"""A document's first outcome in PostgreSQL (the router's writes); each idempotent.

A routing's DocumentRouted goes into the outbox (``triage_runtime.outbox``) in the same
transaction; the caller publishes it after the commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from triage_contracts import DeadLetterV1, DocumentClassifiedV1, DocumentRoutedV1
from triage_runtime import outbox
from triage_runtime.db.models import DocumentOutcome, ReviewItem, RoutingDecision
from triage_runtime.routing import RouteTo, SendToReview


@dataclass(frozen=True, slots=True)
class StoredRoute:
    """The routing decision as stored: its event id, and whether this call created it.

    ``in_review`` says there is none because the document is in review: nothing to publish.
    ``sampled`` says this call also opened the routing's blind quality-sample review item.
    """

    event_id: uuid.UUID
    queue: str
    created: bool
    in_review: bool = False
    sampled: bool = False


Routed = tuple[str, DocumentRoutedV1]
"""A routing's event and the topic it goes to."""
Item = tuple[DocumentClassifiedV1, RouteTo | SendToReview, Routed | None]
"""A decision to apply: the classified event, the decision, and a routing's event (else None)."""


class OutcomeStore:
    """Records a document's first outcome: a routing decision or a review item."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def record_route(
        self, event: DocumentClassifiedV1, decision: RouteTo, *, routed: Routed
    ) -> StoredRoute:
        """Store the decision unless the document has an outcome; return what is stored.

        A document in review is never routed by a later score: a redelivered document scored
        again, this time confidently (another model may serve it by then), keeps its first
        outcome (``in_review``). Only a human decision or a replay moves it on.
        """
        [result] = await self.apply_batch([(event, decision, routed)])
        assert isinstance(result, StoredRoute)
        return result

    async def apply_batch(self, items: Sequence[Item]) -> list[StoredRoute | bool]:
        """``record_route`` or ``open_review`` for each (event, decision, routed), in order
        and in one transaction: all of the batch's effects land, or none.

        One result per item: the StoredRoute of a routing, the bool of a review.
        """
        results: list[StoredRoute | bool] = []
        async with self._sessions.begin() as session:
            if len({event.document_id for event, _, _ in items}) == len(items):
                # Distinct documents do not affect one another: a few set-wise statements.
                return await _apply_distinct(session, items)
            for item in items:  # a document twice: in order, each seeing the one before
                results += await _apply_distinct(session, [item])
        return results

    async def record_dead_letters(self, letters: Sequence[DeadLetterV1]) -> list[str]:
        """Make ``dead_letter`` the outcome, with the letter's stage, error class and reason,
        of each document a dead letter names (``DeadLetterV1.named_document_id``) that has no
        outcome; return those documents. A document with an outcome keeps it, and a later
        decision (a re-driven record scored after all) replaces the dead letter."""
        rows = {
            document_id: {
                "document_id": document_id,
                "kind": "dead_letter",
                "model_version": letter.model.version if letter.model else None,
                "dead_letter_stage": letter.stage,
                "dead_letter_error_class": letter.error_class.value,
                "dead_letter_reason": letter.reason,
            }
            for letter in letters
            if (document_id := letter.named_document_id) is not None
        }
        if not rows:
            return []
        async with self._sessions.begin() as session:
            recorded = await session.scalars(
                insert(DocumentOutcome)
                .values(list(rows.values()))
                .on_conflict_do_nothing(index_elements=["document_id"])
                .returning(DocumentOutcome.document_id)
            )
            return list(recorded)

    async def open_review(self, event: DocumentClassifiedV1, decision: SendToReview) -> bool:
        """Open a review item for the document; False when it already has an outcome.

        An outcome is a review item or a routing decision: a redelivered document scored
        again, this time below its threshold, stays where it was routed.
        """
        [result] = await self.apply_batch([(event, decision, None)])
        return bool(result)


_REPLACED_ON_REDRIVE = (
    "kind",
    "queue",
    "decided_by",
    "model_version",
    "policy_version",
    "dead_letter_stage",
    "dead_letter_error_class",
    "dead_letter_reason",
)
"""The columns a decision writes over a dead-letter outcome (``_outcome_values``'s keys)."""


def _outcome_values(
    event: DocumentClassifiedV1, decision: RouteTo | SendToReview
) -> dict[str, Any]:
    """The document_outcome row a first decision makes."""
    routed = isinstance(decision, RouteTo)
    return {
        "document_id": event.document_id,
        "kind": "routed" if routed else "review",
        "queue": decision.queue if isinstance(decision, RouteTo) else None,
        "decided_by": decision.decided_by.value if isinstance(decision, RouteTo) else None,
        "model_version": event.model.version,
        "policy_version": event.policy_version,
        # A decision replacing a dead letter (a re-driven record) clears its reason.
        "dead_letter_stage": None,
        "dead_letter_error_class": None,
        "dead_letter_reason": None,
    }


async def _apply_distinct(session: AsyncSession, items: Sequence[Item]) -> list[StoredRoute | bool]:
    """``apply_batch`` for items of distinct documents, in a handful of statements.

    The outcome row is claimed first: PostgreSQL's primary key lets exactly one decision per
    document in, whoever else tries at the same time; only a claimed outcome gets its
    routing decision or review item. A document that had an outcome keeps it, unless that
    outcome was a dead letter (the record was re-driven and scored after all).
    """
    if not items:
        return []
    claim = insert(DocumentOutcome).values(
        [_outcome_values(event, decision) for event, decision, _ in items]
    )
    claimed = set(
        await session.scalars(
            claim.on_conflict_do_update(
                index_elements=["document_id"],
                set_={name: claim.excluded[name] for name in _REPLACED_ON_REDRIVE}
                | {"updated_at": func.clock_timestamp()},
                where=DocumentOutcome.kind == "dead_letter",
            ).returning(DocumentOutcome.document_id)
        )
    )
    routes = [
        (event, decision, routed)
        for event, decision, routed in items
        if isinstance(decision, RouteTo) and routed is not None and event.document_id in claimed
    ]
    if routes:
        await session.execute(
            insert(RoutingDecision).values(
                [
                    {
                        "document_id": event.document_id,
                        "queue": decision.queue,
                        "event_id": routed.event_id,
                        "decided_by": decision.decided_by.value,
                        "model_version": event.model.version,
                        "model_role": event.model.role.value,
                        "confidence": decision.confidence,
                    }
                    for event, decision, (_, routed) in routes
                ]
            )
        )
        await outbox.add(session, [routed for _, _, routed in routes])
    # A routing in the policy's quality sample also opens its (blind) review item, in the
    # same transaction: claimed once, so routed once and sampled once.
    reviews = [
        (event, decision)
        for event, decision, _ in items
        if isinstance(decision, SendToReview) and event.document_id in claimed
    ] + [
        (event, decision.quality_sample)
        for event, decision, _ in routes
        if decision.quality_sample is not None
    ]
    if reviews:
        await session.execute(
            insert(ReviewItem).values(
                [
                    {"document_id": event.document_id, **review_item_values(event, decision)}
                    for event, decision in reviews
                ]
            )
        )
    # Documents that had an outcome keep it; a routing they have is reported (not created),
    # so the caller can publish its event now if a crash left it pending.
    earlier = [e.document_id for e, d, _ in items if isinstance(d, RouteTo)]
    stored = {
        row.document_id: row
        for row in await session.scalars(
            select(RoutingDecision).where(
                RoutingDecision.document_id.in_([d for d in earlier if d not in claimed])
            )
        )
    }
    results: list[StoredRoute | bool] = []
    for event, decision, routed in items:
        doc = event.document_id
        if isinstance(decision, SendToReview) or routed is None:
            results.append(doc in claimed)
        elif doc in claimed:
            sampled = decision.quality_sample is not None
            results.append(
                StoredRoute(routed[1].event_id, decision.queue, created=True, sampled=sampled)
            )
        elif (row := stored.get(doc)) is not None:
            results.append(StoredRoute(row.event_id, row.queue, created=False))
        else:
            results.append(
                StoredRoute(routed[1].event_id, decision.queue, created=False, in_review=True)
            )
    return results


def review_item_values(event: DocumentClassifiedV1, decision: SendToReview) -> dict[str, Any]:
    """The columns of a pending review item for ``event`` (all but the document id)."""
    prediction = event.prediction
    document = event.document
    email = document.email
    return {
        "status": "pending",
        "reason": decision.reason.value,
        "priority": decision.priority,
        "due_at": decision.due_at,
        "predicted_label": prediction.label if prediction else None,
        "confidence": prediction.confidence if prediction else None,
        "probabilities": dict(prediction.probabilities) if prediction else None,
        "threshold": prediction.threshold if prediction else None,
        "explanation": (
            event.explanation.model_dump(mode="json") if event.explanation is not None else None
        ),
        "model_version": event.model.version,
        "model_role": event.model.role.value,
        "extraction_status": event.extraction.status.value,
        "source_kind": document.source.kind.value,
        "source_name": document.source.name,
        "filename": document.filename,
        "media_type": document.blob.media_type,
        "blob_sha256": document.blob.sha256,
        "received_at": document.received_at,
        "trace_id": event.trace_id,
        "classified_event_id": event.event_id,
        "email_sender": email.sender if email else None,
        "email_sender_name": email.sender_name if email else None,
        "email_subject": email.subject if email else None,
        "email_mailbox": email.mailbox if email else None,
        "email_part": email.part if email else None,
    }
