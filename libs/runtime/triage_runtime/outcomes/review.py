"""The review workflow: claim with a lease, decide, bulk-decide.

Claims are one conditional UPDATE, so when two reviewers claim the same item at once exactly
one wins. A decision is written (review item, the document's outcome, routing decision, audit
row, and its events in the outbox: ReviewDecision, and DocumentRouted decided by a human) in
one transaction, and the events published once it commits (or by the outbox relay, if that
fails), so no decision is lost and none is applied twice. Human decisions are final: nothing
here, and nothing in the router, overwrites a decided item.

A quality sample (a routed document also reviewed, blind) is decided the same way; a
reviewer who agrees with its queue moves nothing, one who does not withdraws the routing
(DocumentWithdrawn) and routes the document to their queue (DocumentRouted superseding it).

A decision can be undone by its author within the undo window, or reopened by an admin at
any time: the item is open again, the routing the decision made is withdrawn (as a replay
withdraws one), and a ReviewDecisionRetracted names the decision for training consumers.
Items can be escalated (high priority, flagged for admins) and commented on; every action
is audited.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from triage_contracts import (
    BlobRef,
    DecidedBy,
    DocumentRef,
    DocumentRoutedV1,
    Event,
    ModelRef,
    ModelRole,
    Producer,
    Retraction,
    ReviewDecisionRetractedV1,
    ReviewDecisionV1,
    Source,
    SourceKind,
    utcnow,
)
from triage_runtime import audit, outbox
from triage_runtime.db.models import (
    Document,
    DocumentOutcome,
    ReviewComment,
    ReviewItem,
    RoutingDecision,
)
from triage_runtime.outcomes.corrections import OPEN_REVIEW
from triage_runtime.outcomes.withdrawal import withdrawal
from triage_runtime.routing import PRIORITY_HIGH, ReviewReason

Decided = Callable[[str, str, bool], None]
"""Told of each committed decision of a scored item: model version, role, agreed or not."""


class WorkflowError(RuntimeError):
    """A review action that is not allowed now, with the reason for the reviewer."""


class ClaimConflictError(WorkflowError):
    """Someone else holds a live claim on the item (or it is already decided)."""


MAX_COMMENT_CHARS = 2000
MAX_ESCALATION_CHARS = 500


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
        undo_window: timedelta = timedelta(minutes=10),
    ) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._labels = frozenset(labels)
        self._lease = lease
        self._producer = producer
        self._topics = topics
        self._publisher = publisher
        self._on_decided = on_decided
        self._undo_window = undo_window

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
            item = await _locked(session, item_id)
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
            item.note = (note or "")[:MAX_COMMENT_CHARS] or None
            item.claimed_until = None
            sampled = await self._sampled_routing(session, item)
            routed_event_id = uuid.uuid4()
            decision = self._decision_event(item, routed_event_id)
            item.decision_event_id = decision.event_id
            events: list[tuple[str, Event]] = [(self._topics.decisions, decision)]
            if sampled is None or sampled.queue != label:
                events += await self._route(
                    session, item, label, routed_event_id=routed_event_id, overruled=sampled
                )
            await audit.record(
                session,
                actor=reviewer,
                action="decide",
                document_id=item.document_id,
                review_item_id=item_id,
                detail={"label": label, "predicted_label": item.predicted_label}
                | await _note(session, item, kind="note", author=reviewer, body=item.note),
            )
            event_ids = await outbox.add(session, events)
        await self._publisher.publish(event_ids)
        # Told once the decision is committed; unscored items (no model) are not told.
        if item.model_version and self._on_decided is not None:
            self._on_decided(
                item.model_version, item.model_role or "", label == item.predicted_label
            )

    async def undo(self, item_id: int, *, reviewer: str) -> None:
        """Take back ``reviewer``'s own decision within the undo window; the item is theirs
        again (claimed), to decide anew."""
        now = utcnow()
        async with self._sessions.begin() as session:
            item = await self._decided(session, item_id)
            if item.decided_by != reviewer:
                raise WorkflowError(
                    f"only {item.decided_by} may undo their decision; an admin can reopen it"
                )
            assert item.decided_at is not None
            if now - item.decided_at > self._undo_window:
                minutes = self._undo_window.total_seconds() / 60
                raise WorkflowError(
                    f"a decision can be undone for {minutes:g} minutes; ask an admin to reopen it"
                )
            event_ids = await self._retract(session, item, actor=reviewer, how=Retraction.UNDO)
            item.status, item.claimed_by, item.claimed_until = (
                "claimed",
                reviewer,
                now + self._lease,
            )
        await self._publisher.publish(event_ids)

    async def reopen(self, item_id: int, *, admin: str) -> None:
        """Put a decided item back in the queue (an admin's action: the route checks the role)."""
        async with self._sessions.begin() as session:
            item = await self._decided(session, item_id)
            event_ids = await self._retract(session, item, actor=admin, how=Retraction.REOPEN)
            item.status, item.claimed_by, item.claimed_until = "pending", None, None
        await self._publisher.publish(event_ids)

    async def escalate(self, item_id: int, *, actor: str, reason: str) -> None:
        """Flag an open item for admins, at high priority; refused if it is escalated already."""
        reason = reason.strip()[:MAX_ESCALATION_CHARS]
        if not reason:
            raise WorkflowError("say why the item is escalated")
        async with self._sessions.begin() as session:
            document_id = (
                await session.execute(
                    update(ReviewItem)
                    .where(
                        ReviewItem.id == item_id,
                        ReviewItem.status.in_(OPEN_REVIEW),
                        ReviewItem.escalated_at.is_(None),
                    )
                    .values(
                        escalated_at=func.clock_timestamp(),
                        escalated_by=actor,
                        escalation_reason=reason,
                        priority=func.least(ReviewItem.priority, PRIORITY_HIGH),
                    )
                    .returning(ReviewItem.document_id)
                )
            ).scalar_one_or_none()
            if document_id is None:
                found = await session.get(ReviewItem, item_id)
                if found is None:
                    raise WorkflowError(f"review item {item_id} does not exist")
                if found.escalated_at is not None:
                    raise WorkflowError(
                        f"review item {item_id} was escalated already by {found.escalated_by}"
                    )
                raise WorkflowError(f"review item {item_id} is not open; only open items escalate")
            await audit.record(
                session,
                actor=actor,
                action="escalate",
                document_id=document_id,
                review_item_id=item_id,
                detail={"reason": reason},
            )

    async def comment(self, item_id: int, *, author: str, body: str) -> None:
        """Add ``author``'s comment to an item (open or decided)."""
        body = body.strip()[:MAX_COMMENT_CHARS]
        if not body:
            raise WorkflowError("a comment needs some text")
        async with self._sessions.begin() as session:
            item = await session.get(ReviewItem, item_id)
            if item is None:
                raise WorkflowError(f"review item {item_id} does not exist")
            await audit.record(
                session,
                actor=author,
                action="comment",
                document_id=item.document_id,
                review_item_id=item_id,
                detail=await _note(session, item, kind="comment", author=author, body=body),
            )

    @staticmethod
    async def _decided(session: AsyncSession, item_id: int) -> ReviewItem:
        """The decided item, locked; raise if it is not decided (an undo that lost a race)."""
        item = await _locked(session, item_id)
        if item is None:
            raise WorkflowError(f"review item {item_id} does not exist")
        if item.status != "decided":
            raise WorkflowError(f"review item {item_id} is not decided; nothing to take back")
        return item

    async def _retract(
        self, session: AsyncSession, item: ReviewItem, *, actor: str, how: Retraction
    ) -> list[uuid.UUID]:
        """Retract ``item``'s decision: withdraw the routing it made (a quality sample the
        reviewer agreed with made none: the model's routing stands), move the document's
        outcome back to review, announce the retraction; the caller reopens the item."""
        assert item.decided_label is not None
        label, decided_by = item.decided_label, item.decided_by or "unknown"
        routing = (
            await session.execute(
                select(RoutingDecision)
                .where(
                    RoutingDecision.document_id == item.document_id,
                    RoutingDecision.decided_by == DecidedBy.HUMAN.value,
                    RoutingDecision.withdrawn_at.is_(None),
                )
                .with_for_update()
            )
        ).scalar_one_or_none()
        retracted = item.decision_event_id
        if retracted is None and routing is not None:  # decided before the id was kept
            retracted = uuid.uuid5(routing.event_id, "review-decision")
        events: list[tuple[str, Event]] = [
            (
                self._topics.decisions,
                ReviewDecisionRetractedV1(
                    event_id=uuid.uuid5(retracted, "retracted") if retracted else uuid.uuid4(),
                    producer=self._producer,
                    document_id=item.document_id,
                    trace_id=item.trace_id,
                    model=_model_ref(item),
                    review_item_id=item.id,
                    retracted_event_id=retracted,
                    label=label,
                    retraction=how,
                    actor=actor,
                ),
            )
        ]
        if routing is not None:
            why = "undone by its author" if how is Retraction.UNDO else "reopened by an admin"
            events.append(
                (
                    self._topics.routed(routing.queue),
                    withdrawal(
                        routing,
                        producer=self._producer,
                        trace_id=item.trace_id,
                        model=_model_ref(item),
                        reason=f"the decision in review item {item.id} was {why}",
                    ),
                )
            )
            routing.withdrawn_at = utcnow()
            await session.execute(
                update(DocumentOutcome)
                .where(DocumentOutcome.document_id == item.document_id)
                .values(
                    kind="review",
                    queue=None,
                    decided_by=None,
                    updated_at=func.clock_timestamp(),
                )
            )
        item.decided_label = item.decided_by = item.decided_at = None
        item.decision_event_id = None
        item.note = None
        await audit.record(
            session,
            actor=actor,
            action=how.value,
            document_id=item.document_id,
            review_item_id=item.id,
            detail={"label": label, "decided_by": decided_by},
        )
        return await outbox.add(session, events)

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

    @staticmethod
    async def _sampled_routing(session: AsyncSession, item: ReviewItem) -> RoutingDecision | None:
        """The routing a quality-sample item samples (locked), if it still stands."""
        if item.reason != ReviewReason.QUALITY_SAMPLE.value:
            return None
        return (
            await session.execute(
                select(RoutingDecision)
                .where(
                    RoutingDecision.document_id == item.document_id,
                    RoutingDecision.withdrawn_at.is_(None),
                    RoutingDecision.decided_by != DecidedBy.HUMAN.value,
                )
                .with_for_update()
            )
        ).scalar_one_or_none()

    async def _route(
        self,
        session: AsyncSession,
        item: ReviewItem,
        label: str,
        *,
        routed_event_id: uuid.UUID,
        overruled: RoutingDecision | None,
    ) -> list[tuple[str, Event]]:
        """Route the document to the reviewer's ``label``: its outcome, its routing row and
        the DocumentRouted that announces it. A routing the reviewer ``overruled`` (a quality
        sample's) is withdrawn from its queue and superseded, as a replay's correction is."""
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
        human = {
            "queue": label,
            "event_id": routed_event_id,
            "decided_by": DecidedBy.HUMAN.value,
            "model_version": item.model_version,
            "model_role": item.model_role,
            "confidence": None,
            "withdrawn_at": None,
        }
        # A routing a replay withdrew (it sent the document here), or one the reviewer
        # overruled, gives way to the human's.
        replaceable: ColumnElement[bool] = RoutingDecision.withdrawn_at.is_not(None)
        if overruled is not None:
            replaceable = replaceable | (RoutingDecision.event_id == overruled.event_id)
        await session.execute(
            insert(RoutingDecision)
            .values(document_id=item.document_id, **human)
            .on_conflict_do_update(index_elements=["document_id"], set_=human, where=replaceable)
        )
        size = await session.scalar(
            select(Document.size_bytes).where(Document.document_id == item.document_id)
        )
        routed = self._routed_event(
            item,
            routed_event_id,
            size,
            supersedes=overruled.event_id if overruled is not None else None,
        )
        events: list[tuple[str, Event]] = []
        if overruled is not None:
            withdrawn = withdrawal(
                overruled,
                producer=self._producer,
                trace_id=item.trace_id,
                model=routed.model,
                reason=f"a reviewer chose {label} in review item {item.id}",
            )
            events.append((self._topics.routed(overruled.queue), withdrawn))
        events.append((self._topics.routed(label), routed))
        return events

    def _decision_event(self, item: ReviewItem, routed_event_id: uuid.UUID) -> ReviewDecisionV1:
        """The ReviewDecision a decided item announces (its id derived from the routing's)."""
        assert item.decided_label is not None
        return ReviewDecisionV1(
            event_id=uuid.uuid5(routed_event_id, "review-decision"),
            producer=self._producer,
            document_id=item.document_id,
            trace_id=item.trace_id,
            model=_model_ref(item),
            review_item_id=item.id,
            label=item.decided_label,
            reviewer=item.decided_by or "unknown",
            predicted_label=item.predicted_label,
        )

    def _routed_event(
        self,
        item: ReviewItem,
        routed_event_id: uuid.UUID,
        size_bytes: int | None,
        *,
        supersedes: uuid.UUID | None,
    ) -> DocumentRoutedV1:
        """The DocumentRouted a human decision makes."""
        assert item.decided_label is not None
        return DocumentRoutedV1(
            event_id=routed_event_id,
            producer=self._producer,
            document_id=item.document_id,
            trace_id=item.trace_id,
            model=_model_ref(item),
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
            supersedes_event_id=supersedes,
        )


async def _locked(session: AsyncSession, item_id: int) -> ReviewItem | None:
    """The review item, locked, after its document's routing row (if any): the order a
    replay locks them in (``CorrectionStore``), so a decision or an undo and a replay of
    the same document wait for each other instead of deadlocking."""
    document_id = select(ReviewItem.document_id).where(ReviewItem.id == item_id)
    await session.execute(
        select(RoutingDecision.document_id)
        .where(RoutingDecision.document_id == document_id.scalar_subquery())
        .with_for_update()
    )
    return (
        await session.execute(
            select(ReviewItem)
            .where(ReviewItem.id == item_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


def _model_ref(item: ReviewItem) -> ModelRef | None:
    """The model that scored an item, if one did."""
    if item.model_version and item.model_role:
        return ModelRef(version=item.model_version, role=ModelRole(item.model_role))
    return None


async def _note(
    session: AsyncSession, item: ReviewItem, *, kind: str, author: str, body: str | None
) -> dict[str, int]:
    """Keep a note or comment on ``item`` (none without text); the audit detail naming it."""
    if not body:
        return {}
    comment_id = await session.scalar(
        insert(ReviewComment)
        .values(review_item_id=item.id, kind=kind, author=author, body=body)
        .returning(ReviewComment.id)
    )
    return {f"{kind}_id": int(comment_id or 0)}
