"""The router's effects in PostgreSQL (routing decisions, review items); each idempotent."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, exists, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from triage_contracts import DocumentClassifiedV1, utcnow
from triage_runtime.db.models import Document, ReviewItem, RoutingDecision
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
        async with self._sessions.begin() as session:
            return await _record_route(session, event, decision, event_id=event_id)

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
            for event, decision, event_id in items:  # a document twice: in order, one by one
                if isinstance(decision, RouteTo):
                    results.append(await _record_route(session, event, decision, event_id=event_id))
                else:
                    results.append(await _open_review(session, event, decision))
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

    async def open_review(self, event: DocumentClassifiedV1, decision: SendToReview) -> bool:
        """Open a review item for the document; False when it already has an outcome.

        An outcome is a review item or a routing decision: a redelivered document scored
        again, this time below its threshold, stays where it was routed.
        """
        async with self._sessions.begin() as session:
            return await _open_review(session, event, decision)


async def _record_route(
    session: AsyncSession, event: DocumentClassifiedV1, decision: RouteTo, *, event_id: uuid.UUID
) -> StoredRoute:
    """``OutcomeStore.record_route`` inside the caller's transaction."""
    model = event.model
    in_review = await _has_review_item(session, event.document_id)
    if not in_review:
        await session.execute(
            insert(RoutingDecision)
            .values(
                document_id=event.document_id,
                queue=decision.queue,
                event_id=event_id,
                decided_by=decision.decided_by.value,
                model_version=model.version,
                model_role=model.role.value,
                confidence=decision.confidence,
            )
            .on_conflict_do_nothing(index_elements=["document_id"])
        )
    row = (
        await session.execute(
            select(RoutingDecision).where(RoutingDecision.document_id == event.document_id)
        )
    ).scalar_one_or_none()
    if row is None:
        return StoredRoute(event_id, decision.queue, None, in_review=True)
    if row.withdrawn_at is None:
        await _set_status(session, event, status="routed", queue=row.queue)
    # A withdrawn routing (a replay moved the document to review) is never re-applied:
    # it counts as published, so a redelivered score changes nothing.
    return StoredRoute(row.event_id, row.queue, row.published_at or row.withdrawn_at)


async def _open_review(
    session: AsyncSession, event: DocumentClassifiedV1, decision: SendToReview
) -> bool:
    """``OutcomeStore.open_review`` inside the caller's transaction."""
    if await _has_routing_decision(session, event.document_id):
        return False
    result = await session.execute(
        insert(ReviewItem)
        .values(document_id=event.document_id, **review_item_values(event, decision))
        .on_conflict_do_nothing(index_elements=["document_id"])
        .returning(ReviewItem.id)
    )
    opened = result.first() is not None
    if opened:
        await _set_status(session, event, status="in_review", queue=None)
    return opened


async def _apply_distinct(
    session: AsyncSession,
    items: Sequence[tuple[DocumentClassifiedV1, RouteTo | SendToReview, uuid.UUID]],
) -> list[StoredRoute | bool]:
    """``apply_batch`` for items of distinct documents: the same outcome as applying them one
    by one (``_record_route``, ``_open_review``), in a handful of statements."""
    to_route = {e.document_id: (e, d, i) for e, d, i in items if isinstance(d, RouteTo)}
    to_review = {e.document_id: (e, d) for e, d, _ in items if isinstance(d, SendToReview)}
    in_review: set[str] = set()
    if to_route:
        in_review = set(
            await session.scalars(
                select(ReviewItem.document_id).where(ReviewItem.document_id.in_(list(to_route)))
            )
        )
    routable = [doc for doc in to_route if doc not in in_review]
    if routable:
        await session.execute(
            insert(RoutingDecision)
            .values(
                [
                    {
                        "document_id": doc,
                        "queue": decision.queue,
                        "event_id": event_id,
                        "decided_by": decision.decided_by.value,
                        "model_version": event.model.version,
                        "model_role": event.model.role.value,
                        "confidence": decision.confidence,
                    }
                    for doc in routable
                    for event, decision, event_id in [to_route[doc]]
                    if isinstance(decision, RouteTo)
                ]
            )
            .on_conflict_do_nothing(index_elements=["document_id"])
        )
    # Documents to review that have a routing decision keep it (read after the insert
    # above, so a batch never both routes and reviews one document: ids are distinct).
    stored = {
        row.document_id: row
        for row in await session.scalars(
            select(RoutingDecision).where(
                RoutingDecision.document_id.in_(routable + list(to_review))
            )
        )
    }
    reviewable = [doc for doc in to_review if doc not in stored]
    opened: set[str] = set()
    if reviewable:
        opened = set(
            await session.scalars(
                insert(ReviewItem)
                .values(
                    [
                        {"document_id": doc, **review_item_values(*to_review[doc])}
                        for doc in reviewable
                    ]
                )
                .on_conflict_do_nothing(index_elements=["document_id"])
                .returning(ReviewItem.document_id)
            )
        )
    statuses: list[tuple[str, str, str | None]] = [
        (doc, "routed", row.queue)
        for doc in routable
        if (row := stored.get(doc)) is not None and row.withdrawn_at is None
    ] + [(doc, "in_review", None) for doc in opened]
    if statuses:
        versions = {e.document_id: e.model.version for e, _, _ in items}
        table = cast(Table, Document.__table__)
        await session.execute(
            update(table)
            .where(table.c.document_id == bindparam("b_id"), table.c.status != "decided")
            .values(
                status=bindparam("b_status"),
                queue=bindparam("b_queue"),
                model_version=bindparam("b_version"),
                updated_at=utcnow(),
            ),
            [
                {"b_id": doc, "b_status": status, "b_queue": queue, "b_version": versions[doc]}
                for doc, status, queue in statuses
            ],
        )
    results: list[StoredRoute | bool] = []
    for event, decision, event_id in items:
        doc = event.document_id
        if isinstance(decision, SendToReview):
            results.append(doc in opened)
        elif doc in in_review or doc not in stored:
            results.append(StoredRoute(event_id, decision.queue, None, in_review=True))
        else:
            row = stored[doc]
            results.append(
                StoredRoute(row.event_id, row.queue, row.published_at or row.withdrawn_at)
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


async def _has_review_item(session: AsyncSession, document_id: str) -> bool:
    return bool(await session.scalar(select(exists().where(ReviewItem.document_id == document_id))))


async def _has_routing_decision(session: AsyncSession, document_id: str) -> bool:
    return bool(
        await session.scalar(select(exists().where(RoutingDecision.document_id == document_id)))
    )


async def _set_status(
    session: AsyncSession, event: DocumentClassifiedV1, *, status: str, queue: str | None
) -> None:
    """Move the document's status forward (never back from a human decision)."""
    await session.execute(
        update(Document)
        .where(Document.document_id == event.document_id, Document.status != "decided")
        .values(status=status, queue=queue, model_version=event.model.version, updated_at=utcnow())
    )
