"""The review workflow: claim with a lease, decide, bulk-decide.

Claims are one conditional UPDATE, so when two reviewers claim the same item at once exactly
one wins. A decision is written (review item, the document's outcome, routing decision, audit
row, and its events in the outbox: ReviewDecision, and DocumentRouted decided by a human) in
one transaction, and the events published once it commits (or by the outbox relay, if that
fails), so no decision is lost and none is applied twice. Human decisions are final: nothing
here, and nothing in the router, overwrites a decided item.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from triage_contracts import (
    BlobRef,
    DecidedBy,
    DocumentRef,
    DocumentRoutedV1,
    ModelRef,
    ModelRole,
    Producer,
    ReviewDecisionV1,
    Source,
    SourceKind,
    utcnow,
)
from triage_runtime import audit, outbox
from triage_runtime.db.models import (
    Document,
    DocumentOutcome,
    ReviewItem,
    RoutingDecision,
)

Decided = Callable[[str, str, bool], None]
"""Told of each committed decision of a scored item: model version, role, agreed or not."""


class WorkflowError(RuntimeError):
    """A review action that is not allowed now, with the reason for the reviewer."""


class ClaimConflictError(WorkflowError):
    """Someone else holds a live claim on the item (or it is already decided)."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim a reviewer holds until ``until``."""

    item_id: int
    reviewer: str
    until: datetime


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What a bulk decision did: the items decided and those skipped, with why."""

    decided: list[int]
    skipped: dict[int, str]


@dataclass(frozen=True, slots=True)
class DecisionTopics:
    """Where a decision's events go: the decisions topic, and each queue's routed topic."""

    decisions: str
    routed: Callable[[str], str]


class ReviewWorkflow:
    """Claims and decisions on review items, and publishing their events."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        labels: Sequence[str],
        lease: timedelta,
        producer: Producer,
        topics: DecisionTopics,
        publisher: outbox.Publisher,
        on_decided: Decided | None = None,
    ) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._labels = frozenset(labels)
        self._lease = lease
        self._producer = producer
        self._topics = topics
        self._publisher = publisher
        self._on_decided = on_decided

    async def claim(self, item_id: int, *, reviewer: str) -> Claim:
        """Claim an item for ``reviewer`` (renewing their own claim); raise if someone holds it."""
        now = utcnow()
        until = now + self._lease
        async with self._sessions.begin() as session:
            row = (
                await session.execute(
                    update(ReviewItem)
                    .where(
                        ReviewItem.id == item_id,
                        ReviewItem.status.in_(("pending", "claimed")),
                        or_(
                            ReviewItem.claimed_by.is_(None),
                            ReviewItem.claimed_by == reviewer,
                            ReviewItem.claimed_until < now,
                        ),
                    )
                    .values(status="claimed", claimed_by=reviewer, claimed_until=until)
                    .returning(ReviewItem.document_id)
                )
            ).first()
            if row is None:
                raise ClaimConflictError(await self._why_not(session, item_id))
            await audit.record(
                session,
                actor=reviewer,
                action="claim",
                document_id=row[0],
                review_item_id=item_id,
            )
        return Claim(item_id, reviewer, until)

    async def _why_not(self, session: AsyncSession, item_id: int) -> str:
        found = (
            await session.execute(
                select(ReviewItem.status, ReviewItem.claimed_by).where(ReviewItem.id == item_id)
            )
        ).first()
        if found is None:
            return f"review item {item_id} does not exist"
        if found.status == "decided":
            return f"review item {item_id} is already decided"
        if found.status == "closed":
            return f"review item {item_id} was closed: a replay routed the document"
        return f"review item {item_id} is claimed by {found.claimed_by}"

    async def release(self, item_id: int, *, reviewer: str) -> None:
        """Give a claim back before its lease ends."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(ReviewItem)
                .where(ReviewItem.id == item_id, ReviewItem.claimed_by == reviewer)
                .where(ReviewItem.status == "claimed")
                .values(status="pending", claimed_by=None, claimed_until=None)
            )

    async def decide(
        self, item_id: int, *, reviewer: str, label: str, note: str | None = None
    ) -> None:
        """Record a reviewer's queue for an item they hold a live claim on."""
        if label not in self._labels:
            raise WorkflowError(f"{label!r} is not a queue; choose one of {sorted(self._labels)}")
        now = utcnow()
        async with self._sessions.begin() as session:
            item = (
                await session.execute(
                    select(ReviewItem).where(ReviewItem.id == item_id).with_for_update()
                )
            ).scalar_one_or_none()
            if item is None:
                raise WorkflowError(f"review item {item_id} does not exist")
            if item.status == "decided":
                raise ClaimConflictError(f"review item {item_id} is already decided")
            if item.status == "closed":
                raise ClaimConflictError(
                    f"review item {item_id} was closed: a replay routed the document"
                )
            live = item.claimed_until is not None and item.claimed_until >= now
            if item.claimed_by != reviewer or not live:
                raise ClaimConflictError(
                    f"claim review item {item_id} first (held by {item.claimed_by or 'nobody'})"
                    if item.claimed_by != reviewer
                    else f"your claim on review item {item_id} expired; claim it again"
                )
            item.status = "decided"
            item.decided_label = label
            item.decided_by = reviewer
            item.decided_at = now
            item.note = (note or "")[:2000] or None
            item.claimed_until = None
            await session.execute(
                update(DocumentOutcome)
                .where(DocumentOutcome.document_id == item.document_id)
                .values(
                    kind="routed",
                    queue=label,
                    decided_by=DecidedBy.HUMAN.value,
                    updated_at=func.clock_timestamp(),
                )
            )
            routed_event_id = uuid.uuid4()
            human = {
                "queue": label,
                "event_id": routed_event_id,
                "decided_by": DecidedBy.HUMAN.value,
                "model_version": item.model_version,
                "model_role": item.model_role,
                "confidence": None,
                "withdrawn_at": None,
            }
            # A routing a replay withdrew (it sent the document here) gives way to the human's.
            await session.execute(
                insert(RoutingDecision)
                .values(document_id=item.document_id, **human)
                .on_conflict_do_update(
                    index_elements=["document_id"],
                    set_=human,
                    where=RoutingDecision.withdrawn_at.is_not(None),
                )
            )
            await audit.record(
                session,
                actor=reviewer,
                action="decide",
                document_id=item.document_id,
                review_item_id=item_id,
                detail={"label": label, "predicted_label": item.predicted_label},
            )
            size = await session.scalar(
                select(Document.size_bytes).where(Document.document_id == item.document_id)
            )
            events = await outbox.add(session, self._events(item, routed_event_id, size))
        await self._publisher.publish(events)
        # Told once the decision is committed; unscored items (no model) are not told.
        if item.model_version and self._on_decided is not None:
            self._on_decided(
                item.model_version, item.model_role or "", label == item.predicted_label
            )

    async def bulk_decide(
        self, item_ids: Sequence[int], *, reviewer: str, label: str
    ) -> BulkResult:
        """Claim and decide each item; items others hold or already decided are skipped."""
        decided: list[int] = []
        skipped: dict[int, str] = {}
        for item_id in item_ids:
            try:
                await self.claim(item_id, reviewer=reviewer)
                await self.decide(item_id, reviewer=reviewer, label=label)
            except WorkflowError as exc:
                skipped[item_id] = str(exc)
            else:
                decided.append(item_id)
        return BulkResult(decided, skipped)

    def _events(
        self, item: ReviewItem, routed_event_id: uuid.UUID, size_bytes: int | None
    ) -> list[tuple[str, ReviewDecisionV1 | DocumentRoutedV1]]:
        """A human decision's events: ReviewDecision, and the DocumentRouted it makes."""
        assert item.decided_label is not None
        model = (
            ModelRef(version=item.model_version, role=ModelRole(item.model_role))
            if item.model_version and item.model_role
            else None
        )
        decision = ReviewDecisionV1(
            event_id=uuid.uuid5(routed_event_id, "review-decision"),
            producer=self._producer,
            document_id=item.document_id,
            trace_id=item.trace_id,
            model=model,
            review_item_id=item.id,
            label=item.decided_label,
            reviewer=item.decided_by or "unknown",
            predicted_label=item.predicted_label,
        )
        routed = DocumentRoutedV1(
            event_id=routed_event_id,
            producer=self._producer,
            document_id=item.document_id,
            trace_id=item.trace_id,
            model=model,
            queue=item.decided_label,
            decided_by=DecidedBy.HUMAN,
            document=DocumentRef(
                source=Source(kind=SourceKind(item.source_kind), name=item.source_name),
                blob=BlobRef(
                    sha256=item.blob_sha256,
                    size_bytes=size_bytes or 0,
                    media_type=item.media_type,
                ),
                filename=item.filename,
                received_at=item.received_at,
            ),
        )
        return [
            (self._topics.decisions, decision),
            (self._topics.routed(item.decided_label), routed),
        ]
