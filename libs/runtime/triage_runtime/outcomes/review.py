"""The review workflow: claim with a lease (renewed while the reviewer works), decide,
discard, skip, bulk-decide; an admin releases or assigns claims.

Claims are one conditional UPDATE, so when two reviewers claim the same item at once exactly
one wins. Looking at an item claims nothing; deciding takes the claim if nobody else holds a
live one, so a lapsed claim nobody took costs the reviewer nothing. A decision is written
(review item, the document's outcome, routing decision, audit row, and its events in the
outbox: ReviewDecision, and DocumentRouted decided by a human) in one transaction, and the
events published once it commits (or by the outbox relay, if that fails), so no decision is
lost and none is applied twice. Human decisions are final: nothing here, and nothing in the
router, overwrites a decided item.

A quality sample (a routed document also reviewed, blind) is decided the same way; a
reviewer who agrees with its queue moves nothing, one who does not withdraws the routing
(DocumentWithdrawn) and routes the document to their queue (DocumentRouted superseding it).

Besides the model's labels (training data), a reviewer may send a document to another routed
queue (routed, not training data) or discard it as spam or not a document (not routed, not
training data; a quality sample's routing is withdrawn). ``DecisionKind`` records which.

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
from enum import StrEnum

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


class DecisionKind(StrEnum):
    """What a reviewer decided: only ``LABEL`` decisions are training examples."""

    LABEL = "label"
    """One of the model's labels (its queue)."""
    QUEUE = "queue"
    """Another routed queue, not one of the model's labels."""
    SPAM = "spam"
    NOT_DOCUMENT = "not_document"


DISCARDS = frozenset({DecisionKind.SPAM, DecisionKind.NOT_DOCUMENT})
"""Decisions that route the document nowhere."""


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
        other_queues: Sequence[str] = (),
        lease: timedelta,
        producer: Producer,
        topics: DecisionTopics,
        publisher: outbox.Publisher,
        on_decided: Decided | None = None,
        undo_window: timedelta = timedelta(minutes=10),
    ) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._labels = frozenset(labels)
        self._other_queues = frozenset(other_queues) - self._labels
        self._lease = lease
        self._producer = producer
        self._topics = topics
        self._publisher = publisher
        self._on_decided = on_decided
        self._undo_window = undo_window

    async def claim(self, item_id: int, *, reviewer: str) -> Claim:
        """Claim an item for ``reviewer`` (renewing their own claim); raise if someone holds it.

        Only a new claim is audited; renewing one's own claim writes nothing to the audit."""
        now = utcnow()
        until = now + self._lease
        async with self._sessions.begin() as session:
            if await self._renew(session, item_id, reviewer=reviewer, until=until):
                return Claim(item_id, reviewer, until)
            row = (
                await session.execute(
                    update(ReviewItem)
                    .where(
                        ReviewItem.id == item_id,
                        ReviewItem.status.in_(("pending", "claimed")),
                        or_(ReviewItem.claimed_by.is_(None), ReviewItem.claimed_until < now),
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

    async def renew(self, item_id: int, *, reviewer: str) -> Claim | None:
        """Extend ``reviewer``'s own claim (also one that lapsed if nobody took it since);
        None when they hold none. Not audited: it is the same claim."""
        until = utcnow() + self._lease
        async with self._sessions.begin() as session:
            if await self._renew(session, item_id, reviewer=reviewer, until=until):
                return Claim(item_id, reviewer, until)
        return None

    @staticmethod
    async def _renew(
        session: AsyncSession, item_id: int, *, reviewer: str, until: datetime
    ) -> bool:
        renewed = await session.execute(
            update(ReviewItem)
            .where(
                ReviewItem.id == item_id,
                ReviewItem.status == "claimed",
                ReviewItem.claimed_by == reviewer,
            )
            .values(claimed_until=until)
            .returning(ReviewItem.id)
        )
        return renewed.first() is not None

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

    async def skip(self, item_id: int, *, reviewer: str) -> None:
        """Leave an item for someone else: release the reviewer's claim, if any; audited."""
        async with self._sessions.begin() as session:
            item = await self._open_item(session, item_id)
            if item.claimed_by == reviewer:
                item.status, item.claimed_by, item.claimed_until = "pending", None, None
            await audit.record(
                session,
                actor=reviewer,
                action="skip",
                document_id=item.document_id,
                review_item_id=item_id,
            )

    async def release_for(self, item_id: int, *, admin: str) -> str | None:
        """An admin ends whoever's claim on an item; return whose it was; audited."""
        return await self._reclaim(item_id, to=None, until=None, admin=admin)

    async def assign(self, item_id: int, *, to: str, admin: str) -> Claim:
        """An admin gives an item's claim (a fresh lease) to ``to``, whoever held it; audited."""
        until = utcnow() + self._lease
        await self._reclaim(item_id, to=to, until=until, admin=admin)
        return Claim(item_id, to, until)

    async def _reclaim(
        self, item_id: int, *, to: str | None, until: datetime | None, admin: str
    ) -> str | None:
        """An admin's change of an open item's claim (to nobody, or to ``to``), audited as
        ``release_claim`` or ``assign``; return who held it before."""
        async with self._sessions.begin() as session:
            item = await self._open_item(session, item_id)
            holder = item.claimed_by
            item.status = "pending" if to is None else "claimed"
            item.claimed_by, item.claimed_until = to, until
            detail: dict[str, str | None] = {"holder": holder}
            if to is not None:
                detail["to"] = to
            await audit.record(
                session,
                actor=admin,
                action="release_claim" if to is None else "assign",
                document_id=item.document_id,
                review_item_id=item_id,
                detail=detail,
            )
        return holder

    @staticmethod
    async def _open_item(session: AsyncSession, item_id: int) -> ReviewItem:
        """The item, locked, if it is still open; else raise why not."""
        item = await _locked(session, item_id)
        if item is None:
            raise WorkflowError(f"review item {item_id} does not exist")
        if item.status == "decided":
            raise ClaimConflictError(f"review item {item_id} is already decided")
        if item.status == "closed":
            raise ClaimConflictError(
                f"review item {item_id} was closed: a replay routed the document"
            )
        return item

    def kind_of(self, label: str) -> DecisionKind:
        """Whether ``label`` is one of the model's labels or another routed queue; raise if
        it is neither."""
        if label in self._labels:
            return DecisionKind.LABEL
        if label in self._other_queues:
            return DecisionKind.QUEUE
        queues = sorted(self._labels | self._other_queues)
        raise WorkflowError(f"{label!r} is not a queue; choose one of {queues}")

    async def decide(
        self, item_id: int, *, reviewer: str, label: str, note: str | None = None
    ) -> None:
        """Route an item to a reviewer's queue. The reviewer needs no claim of their own, only
        that nobody else holds a live one."""
        await self._decide(item_id, reviewer, self.kind_of(label), label, note)

    async def discard(
        self, item_id: int, *, reviewer: str, kind: DecisionKind, note: str | None = None
    ) -> None:
        """Decide that an item is spam or not a document: routed nowhere, not training data."""
        if kind not in DISCARDS:
            raise WorkflowError(f"{kind!r} does not discard a document")
        await self._decide(item_id, reviewer, kind, None, note)

    async def _decide(
        self,
        item_id: int,
        reviewer: str,
        kind: DecisionKind,
        label: str | None,
        note: str | None,
    ) -> None:
        now = utcnow()
        async with self._sessions.begin() as session:
            item = await self._open_item(session, item_id)
            live = item.claimed_until is not None and item.claimed_until >= now
            if item.claimed_by not in (None, reviewer) and live:
                raise ClaimConflictError(f"review item {item_id} is claimed by {item.claimed_by}")
            item.status = "decided"
            item.decided_label = label
            item.decision_kind = kind.value
            item.decided_by = reviewer
            item.decided_at = now
            item.note = (note or "")[:MAX_COMMENT_CHARS] or None
            item.claimed_by = reviewer
            item.claimed_until = None
            sampled = await self._sampled_routing(session, item)
            events: list[tuple[str, Event]] = []
            if label is None:
                events += await self._discard(session, item, kind, overruled=sampled)
            else:
                routed_event_id = uuid.uuid4()
                decision = self._decision_event(item, routed_event_id)
                item.decision_event_id = decision.event_id
                events.append((self._topics.decisions, decision))
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
                detail={
                    "label": label,
                    "kind": kind.value,
                    "predicted_label": item.predicted_label,
                }
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
        events: list[tuple[str, Event]] = []
        if label is not None:  # a discard announced no decision: nothing to retract
            events.append(
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
            )
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
            await _back_to_review(session, item.document_id)
        elif item.decision_kind in {kind.value for kind in DISCARDS}:
            await _back_to_review(session, item.document_id)
        item.decided_label = item.decided_by = item.decided_at = None
        item.decision_kind = None
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

    async def _discard(
        self,
        session: AsyncSession,
        item: ReviewItem,
        kind: DecisionKind,
        *,
        overruled: RoutingDecision | None,
    ) -> list[tuple[str, Event]]:
        """Route the document nowhere: its outcome becomes ``discarded``; a routing the
        reviewer ``overruled`` (a quality sample's) is withdrawn from its queue."""
        await session.execute(
            update(DocumentOutcome)
            .where(DocumentOutcome.document_id == item.document_id)
            .values(
                kind="discarded",
                queue=None,
                decided_by=DecidedBy.HUMAN.value,
                updated_at=func.clock_timestamp(),
            )
        )
        if overruled is None:
            return []
        overruled.withdrawn_at = utcnow()
        withdrawn = withdrawal(
            overruled,
            producer=self._producer,
            trace_id=item.trace_id,
            model=_model_ref(item),
            reason=f"a reviewer marked review item {item.id} {kind.value.replace('_', ' ')}",
        )
        return [(self._topics.routed(overruled.queue), withdrawn)]

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


async def _back_to_review(session: AsyncSession, document_id: str) -> None:
    """Make the document's outcome ``review`` again (its decision was taken back)."""
    await session.execute(
        update(DocumentOutcome)
        .where(DocumentOutcome.document_id == document_id)
        .values(kind="review", queue=None, decided_by=None, updated_at=func.clock_timestamp())
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
