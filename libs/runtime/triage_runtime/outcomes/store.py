"""A document's first outcome in PostgreSQL (the router's writes); each idempotent."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from triage_contracts import DeadLetterV1, DocumentClassifiedV1, utcnow
from triage_runtime.db.models import DocumentOutcome, ReviewItem, RoutingDecision
from triage_runtime.routing import RouteTo, SendToReview


@dataclass(frozen=True, slots=True)
class StoredRoute:
    """The routing decision as stored: its event id and whether it was already published.

    ``in_review`` says there is none because the document is in review: nothing to publish.
    """

    event_id: uuid.UUID
    queue: str
    published_at: datetime | None
    in_review: bool = False


class OutcomeStore:
    """Records a document's first outcome: a routing decision or a review item."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def record_route(
        self, event: DocumentClassifiedV1, decision: RouteTo, *, event_id: uuid.UUID
    ) -> StoredRoute:
        """Store the decision unless the document has an outcome; return what is stored.

        A document in review is never routed by a later score: a redelivered document scored
        again, this time confidently (another model may serve it by then), keeps its first
        outcome (``in_review``). Only a human decision or a replay moves it on.
        """
        [result] = await self.apply_batch([(event, decision, event_id)])
        assert isinstance(result, StoredRoute)
        return result

    async def apply_batch(
        self, items: Sequence[tuple[DocumentClassifiedV1, RouteTo | SendToReview, uuid.UUID]]
    ) -> list[StoredRoute | bool]:
        """``record_route`` or ``open_review`` for each (event, decision, routed event id), in
        order and in one transaction: all of the batch's effects land, or none.

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

    async def mark_published(self, document_id: str) -> None:
        """Note that the routed event for ``document_id`` is on its topic."""
        await self.mark_published_many([document_id])

    async def mark_published_many(self, document_ids: Sequence[str]) -> None:
        """Note that the routed events of these documents are on their topics."""
        if not document_ids:
            return
        async with self._sessions.begin() as session:
            await session.execute(
                update(RoutingDecision)
                .where(RoutingDecision.document_id.in_(list(document_ids)))
                .values(published_at=utcnow())
            )

    async def record_dead_letters(self, letters: Sequence[DeadLetterV1]) -> list[str]:
        """Make ``dead_letter`` the outcome of each document a dead letter names that has no
        outcome; return those documents. A document with an outcome keeps it, and a later
        decision (a re-driven record scored after all) replaces the dead letter."""
        rows = {
            letter.document_id: {
                "document_id": letter.document_id,
                "kind": "dead_letter",
                "model_version": letter.model.version if letter.model else None,
            }
            for letter in letters
            if letter.document_id is not None
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
        [result] = await self.apply_batch([(event, decision, uuid.uuid4())])
        return bool(result)


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
    }


async def _apply_distinct(
    session: AsyncSession,
    items: Sequence[tuple[DocumentClassifiedV1, RouteTo | SendToReview, uuid.UUID]],
) -> list[StoredRoute | bool]:
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
                set_={
                    name: claim.excluded[name]
                    for name in ("kind", "queue", "decided_by", "model_version", "policy_version")
                }
                | {"updated_at": func.clock_timestamp()},
                where=DocumentOutcome.kind == "dead_letter",
            ).returning(DocumentOutcome.document_id)
        )
    )
    routes = [
        (event, decision, event_id)
        for event, decision, event_id in items
        if isinstance(decision, RouteTo) and event.document_id in claimed
    ]
    if routes:
        await session.execute(
            insert(RoutingDecision).values(
                [
                    {
                        "document_id": event.document_id,
                        "queue": decision.queue,
                        "event_id": event_id,
                        "decided_by": decision.decided_by.value,
                        "model_version": event.model.version,
                        "model_role": event.model.role.value,
                        "confidence": decision.confidence,
                    }
                    for event, decision, event_id in routes
                ]
            )
        )
    reviews = [
        (event, decision)
        for event, decision, _ in items
        if isinstance(decision, SendToReview) and event.document_id in claimed
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
    # Documents that had an outcome: a routing they have is re-published if it was not yet
    # (a crash between commit and publish); a withdrawn one (a replay moved the document to
    # review) counts as published, so a redelivered score changes nothing.
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
    for event, decision, event_id in items:
        doc = event.document_id
        if isinstance(decision, SendToReview):
            results.append(doc in claimed)
        elif doc in claimed:
            results.append(StoredRoute(event_id, decision.queue, None))
        elif (row := stored.get(doc)) is not None:
            results.append(
                StoredRoute(row.event_id, row.queue, row.published_at or row.withdrawn_at)
            )
        else:
            results.append(StoredRoute(event_id, decision.queue, None, in_review=True))
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
        "email_subject": email.subject if email else None,
        "email_mailbox": email.mailbox if email else None,
    }
