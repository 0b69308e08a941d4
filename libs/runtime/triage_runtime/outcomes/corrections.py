"""Re-routing after a replay: bring a document's outcome in line with a new score.

``CorrectionStore.apply`` compares what the router (or an earlier replay) did with a
document to what a re-score decides, and changes only what differs, in one transaction:

- routed to queue A, now queue B: the routing moves to B; a DocumentWithdrawn goes to A's
  topic and a DocumentRouted (``supersedes_event_id`` = the withdrawn event) to B's;
- routed to A, now low confidence: the routing is withdrawn and a review item opened
  (or reopened; an open quality sample of the routing becomes that item);
- in review, now confident: the review item is closed and the document routed;
- in review and still in review: the item's score and reason are updated in place;
- decided by a human: nothing changes, ever;
- not yet seen by the router: nothing changes (the router will handle it).

Every change writes a ``routing_correction`` row, and the events that announce it go into
the outbox (``triage_runtime.outbox``) in the same transaction; a ``Change`` names them, for
the caller to publish after the commit (the outbox relay publishes what it does not). Applying
the same score twice changes nothing the second time.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from triage_contracts import (
    DocumentClassifiedV1,
    DocumentWithdrawnV1,
    Event,
    Producer,
    utcnow,
)
from triage_runtime import outbox
from triage_runtime.db.models import (
    DocumentOutcome,
    ReviewItem,
    RoutingCorrection,
    RoutingDecision,
)
from triage_runtime.outcomes.store import review_item_values
from triage_runtime.outcomes.withdrawal import withdrawal
from triage_runtime.routing import Decision, ReviewReason, RouteTo, SendToReview, routed_event

REVIEW = "review"
"""How the review queue is named in outcomes and reports."""

OPEN_REVIEW = ("pending", "claimed")


class Outcome(enum.StrEnum):
    """What a re-score did to a document."""

    UNCHANGED = "unchanged"
    CHANGED = "changed"
    REVIEW_UPDATED = "review_updated"
    KEPT_HUMAN = "kept_human_decision"
    NOT_YET_ROUTED = "not_yet_routed"


@dataclass(frozen=True, slots=True)
class Change:
    """One document's before and after (``review`` for the review queue)."""

    document_id: str
    outcome: Outcome
    old: str
    new: str
    old_model_version: str | None
    new_model_version: str
    confidence: float | None
    event_ids: tuple[uuid.UUID, ...] = ()
    """The events announcing the change, in the outbox (committed unless a dry run)."""


class CorrectionStore:
    """Applies re-scores to the routing and review tables and publishes the corrections."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        producer: Producer,
        review_sla: timedelta,
        topic_for: Callable[[str], str],
    ) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._producer = producer
        self._review_sla = review_sla
        self._topic_for = topic_for

    async def apply(
        self,
        event: DocumentClassifiedV1,
        decision: Decision,
        *,
        replay_id: str,
        dry_run: bool = False,
    ) -> Change:
        """Bring the document's outcome in line with ``decision``; with ``dry_run``, only say."""
        [change] = await self.apply_many([(event, decision)], replay_id=replay_id, dry_run=dry_run)
        return change

    async def apply_many(
        self,
        decided: Sequence[tuple[DocumentClassifiedV1, Decision]],
        *,
        replay_id: str,
        dry_run: bool = False,
    ) -> list[Change]:
        """``apply`` for a batch in one transaction: all of it lands, or none of it."""
        changes: list[Change] = []
        # Every document once: lock and read all their rows in two statements. A document
        # twice: one at a time, so each application sees the one before it.
        distinct = len({event.document_id for event, _ in decided}) == len(decided)
        chunks = [decided] if distinct else [[one] for one in decided]
        async with self._sessions() as session, session.begin():
            for chunk in chunks:
                routings, items = await self._lock_rows(
                    session, [event.document_id for event, _ in chunk]
                )
                for event, decision in chunk:
                    doc_id = event.document_id
                    changes.append(
                        await self._apply(
                            session,
                            event,
                            decision,
                            routings.get(doc_id),
                            items.get(doc_id),
                            replay_id=replay_id,
                        )
                    )
            if dry_run:
                await session.rollback()
        return changes

    @staticmethod
    async def _lock_rows(
        session: AsyncSession, ids: Sequence[str]
    ) -> tuple[dict[str, RoutingDecision], dict[str, ReviewItem]]:
        """The routing and review rows of these documents, locked in document order (so two
        replays cannot deadlock), read afresh even if the session holds them already."""
        routings = (
            await session.execute(
                select(RoutingDecision)
                .where(RoutingDecision.document_id.in_(ids))
                .order_by(RoutingDecision.document_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalars()
        items = (
            await session.execute(
                select(ReviewItem)
                .where(ReviewItem.document_id.in_(ids))
                .order_by(ReviewItem.document_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalars()
        return (
            {row.document_id: row for row in routings},
            {row.document_id: row for row in items},
        )

    async def _apply(
        self,
        session: AsyncSession,
        event: DocumentClassifiedV1,
        decision: Decision,
        routing: RoutingDecision | None,
        item: ReviewItem | None,
        *,
        replay_id: str,
    ) -> Change:
        doc_id = event.document_id
        new = decision.queue if isinstance(decision, RouteTo) else REVIEW
        confidence = event.prediction.confidence if event.prediction else None

        def change(
            outcome: Outcome, old: str, old_version: str | None, events: Sequence[uuid.UUID] = ()
        ) -> Change:
            return Change(
                doc_id, outcome, old, new, old_version, event.model.version, confidence, (*events,)
            )

        # A human routing that was withdrawn (its decision undone or reopened) no longer
        # stands: the document is in review again.
        if (item is not None and item.status == "decided") or (
            routing is not None and routing.decided_by == "human" and routing.withdrawn_at is None
        ):
            human = item.decided_label if item is not None and item.decided_label else None
            label = human or (routing.queue if routing else REVIEW)
            return Change(
                doc_id, Outcome.KEPT_HUMAN, label, label, None, event.model.version, confidence
            )
        if routing is not None and routing.withdrawn_at is None:
            old, old_version = routing.queue, routing.model_version
        elif item is not None and item.status in OPEN_REVIEW:
            old, old_version = REVIEW, item.model_version
        else:
            return change(Outcome.NOT_YET_ROUTED, "-", None)

        if isinstance(decision, RouteTo):
            if old == decision.queue:
                return change(Outcome.UNCHANGED, old, old_version)
            events = await self._route(
                session,
                event,
                decision,
                routing,
                item,
                replay_id=replay_id,
                old_version=old_version,
            )
            return change(Outcome.CHANGED, old, old_version, events)
        if old == REVIEW:
            assert item is not None
            updated = await self._update_review(session, event, decision, item)
            outcome = Outcome.REVIEW_UPDATED if updated else Outcome.UNCHANGED
            return change(outcome, old, old_version)
        assert routing is not None
        events = await self._to_review(session, event, decision, routing, replay_id=replay_id)
        return change(Outcome.CHANGED, old, old_version, events)

    def _withdrawal(
        self, event: DocumentClassifiedV1, routing: RoutingDecision, replay_id: str
    ) -> DocumentWithdrawnV1:
        return withdrawal(
            routing,
            producer=self._producer,
            trace_id=event.trace_id,
            model=event.model,
            reason=f"re-scored by {event.model.version} in replay {replay_id}",
            replay_id=replay_id,
        )

    async def _route(
        self,
        session: AsyncSession,
        event: DocumentClassifiedV1,
        decision: RouteTo,
        routing: RoutingDecision | None,
        item: ReviewItem | None,
        *,
        replay_id: str,
        old_version: str | None,
    ) -> list[uuid.UUID]:
        events: list[tuple[str, Event]] = []
        superseded = None
        if routing is not None and routing.withdrawn_at is None:
            events.append((routing.queue, self._withdrawal(event, routing, replay_id)))
            superseded = routing.event_id
        routed = routed_event(event, decision, producer=self._producer, supersedes=superseded)
        events.append((decision.queue, routed))
        await self._set_outcome(session, event, decision)
        values = {
            "queue": decision.queue,
            "event_id": routed.event_id,
            "decided_by": decision.decided_by.value,
            "model_version": event.model.version,
            "model_role": event.model.role.value,
            "confidence": decision.confidence,
            "withdrawn_at": None,
        }
        await session.execute(
            insert(RoutingDecision)
            .values(document_id=event.document_id, **values)
            .on_conflict_do_update(index_elements=["document_id"], set_=values)
        )
        if item is not None and item.status in OPEN_REVIEW:
            item.status = "closed"
            item.claimed_by = None
            item.claimed_until = None
            item.note = (
                f"closed by replay {replay_id}: routed to {decision.queue} by {event.model.version}"
            )
        return await self._record(
            session,
            event,
            replay_id=replay_id,
            from_queue=routing.queue if routing is not None and superseded else None,
            from_version=old_version,
            to_queue=decision.queue,
            withdrawn=superseded,
            routed=routed.event_id,
            events=events,
        )

    async def _to_review(
        self,
        session: AsyncSession,
        event: DocumentClassifiedV1,
        decision: SendToReview,
        routing: RoutingDecision,
        *,
        replay_id: str,
    ) -> list[uuid.UUID]:
        now = utcnow()
        withdrawal = self._withdrawal(event, routing, replay_id)
        routing.withdrawn_at = now
        await self._set_outcome(session, event, decision)
        values = review_item_values(event, decision)
        values["due_at"] = max(decision.due_at, now + self._review_sla)
        values |= {
            "claimed_by": None,
            "claimed_until": None,
            "decided_label": None,
            "decided_by": None,
            "decided_at": None,
            "decision_event_id": None,
            "note": f"opened by replay {replay_id}: {event.model.version} is not confident",
        }
        await session.execute(
            insert(ReviewItem)
            .values(document_id=event.document_id, **values)
            .on_conflict_do_update(
                index_elements=["document_id"],
                set_=values,
                # An open quality sample becomes the ordinary review item it now is: the
                # routing it sampled is withdrawn, so it measures nothing any more.
                where=(ReviewItem.status == "closed")
                | (
                    (ReviewItem.reason == ReviewReason.QUALITY_SAMPLE.value)
                    & ReviewItem.status.in_(OPEN_REVIEW)
                ),
            )
        )
        return await self._record(
            session,
            event,
            replay_id=replay_id,
            from_queue=routing.queue,
            from_version=routing.model_version,
            to_queue=None,
            withdrawn=routing.event_id,
            routed=None,
            events=[(routing.queue, withdrawal)],
        )

    async def _update_review(
        self,
        session: AsyncSession,
        event: DocumentClassifiedV1,
        decision: SendToReview,
        item: ReviewItem,
    ) -> bool:
        prediction = event.prediction
        wanted: dict[str, Any] = {
            "reason": decision.reason.value,
            "predicted_label": prediction.label if prediction else None,
            "confidence": prediction.confidence if prediction else None,
            "probabilities": dict(prediction.probabilities) if prediction else None,
            "model_version": event.model.version,
            "model_role": event.model.role.value,
            "extraction_status": event.extraction.status.value,
        }
        if all(_same(getattr(item, name), value) for name, value in wanted.items()):
            return False
        for name, value in wanted.items():
            setattr(item, name, value)
        item.classified_event_id = event.event_id
        await self._set_outcome(session, event, decision)
        return True

    @staticmethod
    async def _set_outcome(
        session: AsyncSession, event: DocumentClassifiedV1, decision: Decision
    ) -> None:
        """Move the document's outcome to ``decision`` (never one a human decided)."""
        routed = isinstance(decision, RouteTo)
        values = {
            "kind": "routed" if routed else "review",
            "queue": decision.queue if isinstance(decision, RouteTo) else None,
            "decided_by": decision.decided_by.value if isinstance(decision, RouteTo) else None,
            "model_version": event.model.version,
            "policy_version": event.policy_version,
            "updated_at": func.clock_timestamp(),
        }
        await session.execute(
            insert(DocumentOutcome)
            .values(document_id=event.document_id, **values)
            .on_conflict_do_update(
                index_elements=["document_id"],
                set_=values,
                where=DocumentOutcome.decided_by.is_distinct_from("human"),
            )
        )

    async def _record(
        self,
        session: AsyncSession,
        event: DocumentClassifiedV1,
        *,
        replay_id: str,
        from_queue: str | None,
        from_version: str | None,
        to_queue: str | None,
        withdrawn: uuid.UUID | None,
        routed: uuid.UUID | None,
        events: list[tuple[str, Event]],
    ) -> list[uuid.UUID]:
        """Write the correction row, and its events (by queue) to the outbox; their ids."""
        session.add(
            RoutingCorrection(
                replay_id=replay_id,
                document_id=event.document_id,
                from_queue=from_queue,
                to_queue=to_queue,
                from_model_version=from_version,
                to_model_version=event.model.version,
                confidence=event.prediction.confidence if event.prediction else None,
                withdrawn_event_id=withdrawn,
                routed_event_id=routed,
            )
        )
        return await outbox.add(session, [(self._topic_for(queue), e) for queue, e in events])


# Scores closer than this (one percentage point) are the same score: a model in bfloat16
# gives a document probabilities that move by up to about 0.003 with the torch thread count
# of the process scoring it, and a replay that "updated" a review item for that would never
# be idempotent.
SCORE_TOLERANCE = 0.01


def _same(stored: Any, wanted: Any) -> bool:
    """Whether a review item's stored value already says what ``wanted`` says (scores and
    per-label probabilities within SCORE_TOLERANCE)."""
    if isinstance(stored, float) and isinstance(wanted, float):
        return abs(stored - wanted) < SCORE_TOLERANCE
    if isinstance(stored, dict) and isinstance(wanted, dict):
        return stored.keys() == wanted.keys() and all(
            _same(float(stored[k]), float(wanted[k])) for k in wanted
        )
    return bool(stored == wanted)
