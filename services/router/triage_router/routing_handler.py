"""Applies routing decisions (``triage_runtime.routing.decide``) to batches of classified
events: store each document's first outcome with its routing's event in the outbox, then
publish that event; count and log both.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Collection, Sequence
from typing import Protocol

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from triage_contracts import (
    DeadLetterV1,
    DocumentClassifiedV1,
    ErrorClass,
    Producer,
    topics,
    utcnow,
)
from triage_router.metrics import (
    DECISIONS,
    DUPLICATES,
    END_TO_END_SECONDS,
    PROCESS_SECONDS,
    SERVICE,
)
from triage_router.settings import Settings
from triage_runtime import routing, tracing
from triage_runtime.kafka import (
    ConsumedRecord,
    DeadLetters,
    UnprocessableError,
    decode_record,
)
from triage_runtime.metrics import EVENTS_CONSUMED
from triage_runtime.outbox import Publisher
from triage_runtime.outcomes.store import Item, Routed, StoredRoute
from triage_runtime.routing import ReviewReason, RoutingPolicy

log = logging.getLogger(__name__)

Decoded = tuple[ConsumedRecord, DocumentClassifiedV1]
Ready = tuple[ConsumedRecord, DocumentClassifiedV1, RoutingPolicy]


class Outcomes(Protocol):
    """Where documents' first outcomes are stored (``triage_runtime.outcomes.OutcomeStore``)."""

    async def record_route(
        self, event: DocumentClassifiedV1, decision: routing.RouteTo, *, routed: Routed
    ) -> StoredRoute:
        """Store a routing (its event in the outbox) unless the document has an outcome."""
        ...

    async def apply_batch(self, items: Sequence[Item]) -> list[StoredRoute | bool]:
        """Store each decision in one transaction; a StoredRoute or an opened-review bool each."""
        ...

    async def open_review(
        self, event: DocumentClassifiedV1, decision: routing.SendToReview
    ) -> bool:
        """Open a review item; False when the document already has an outcome."""
        ...

    async def record_dead_letters(self, letters: Sequence[DeadLetterV1]) -> list[str]:
        """Make dead_letter the outcome of the named documents that have none; return them."""
        ...


class Policies(Protocol):
    """The routing policies events name (``triage_runtime.policy_store.PolicyCache``)."""

    async def named(self, versions: Collection[int | None]) -> dict[int | None, RoutingPolicy]:
        """The policy of each version (None: the default); unknown versions are left out."""
        ...


class RoutingHandler:
    """Turns batches of DocumentClassified into stored outcomes and published routings.

    Offsets commit after ``handle`` returns, so a batch's effects, with their routed events
    in the outbox, are durable before they do; a database outage raises, and the batch is
    redelivered. The routed events are published after the commit (or by the outbox relay).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        outcomes: Outcomes,
        outbox: Publisher,
        policies: Policies,
        dead_letters: DeadLetters,
        producer: Producer,
    ) -> None:
        self._settings = settings
        self._outcomes = outcomes
        self._outbox = outbox
        self._policies = policies
        self._dead_letters = dead_letters
        self._producer = producer

    async def handle(self, records: Sequence[ConsumedRecord]) -> None:
        """Apply a batch of routing decisions; what cannot be decoded is a dead letter. The
        batch is one span (``route <topic>``), linked to each record's own trace."""
        with tracing.batch(
            f"route {topics.CLASSIFIED}",
            messaging__destination__name=topics.CLASSIFIED,
            messaging__batch__message_count=len(records),
        ):
            await self._handle(records)

    async def _handle(self, records: Sequence[ConsumedRecord]) -> None:
        decoded: list[Decoded] = []
        for record in records:
            try:
                decoded.append((record, decode_record(record, DocumentClassifiedV1)))
            except UnprocessableError as exc:
                await self._dead_letters.send(record, exc, consumed_topic=topics.CLASSIFIED)
        try:
            await self.apply_batch(await self.with_policies(decoded))
        except (OperationalError, InterfaceError):
            # The database is unreachable: every message would fail alike, so pause, then let
            # the batch be redelivered (NACK seeks back) rather than skip ahead.
            log.exception("database unavailable; the batch will be redelivered")
            EVENTS_CONSUMED.labels(SERVICE, topics.CLASSIFIED, "retried").inc(len(decoded))
            await asyncio.sleep(self._settings.storage_retry_seconds)
            raise

    async def handle_dead_letters(self, records: Sequence[ConsumedRecord]) -> None:
        """Record ``dead_letter`` as the outcome of each document a dead letter names and that
        has no outcome, so its status says so; a dead letter that cannot be read is logged
        (never dead-lettered again). A database outage raises: the batch is redelivered."""
        letters: list[DeadLetterV1] = []
        for record in records:
            try:
                letters.append(decode_record(record, DeadLetterV1))
            except UnprocessableError as exc:
                log.warning(
                    "a dead letter could not be read; no outcome recorded for it",
                    extra={
                        "partition": record.partition,
                        "offset": record.offset,
                        "why": exc.reason,
                    },
                )
        recorded = set(await self._outcomes.record_dead_letters(letters))
        for letter in letters:
            if letter.named_document_id in recorded:
                recorded.discard(letter.named_document_id)  # counted once per document
                DECISIONS.labels("dead_letter", letter.error_class.value).inc()
                log.info(
                    "document dead-lettered",
                    extra={
                        "document_id": letter.named_document_id,
                        "trace_id": letter.trace_id,
                        "stage": letter.stage,
                        "error_class": letter.error_class.value,
                    },
                )
        EVENTS_CONSUMED.labels(SERVICE, topics.DEADLETTER, "ok").inc(len(records))

    async def with_policies(self, decoded: Sequence[Decoded]) -> list[Ready]:
        """Each event with the routing policy it names; an event naming a version the registry
        does not hold is a dead letter (no retry will make it appear)."""
        named = await self._policies.named({event.policy_version for _, event in decoded})
        ready = []
        for record, event in decoded:
            policy = named.get(event.policy_version)
            if policy is None:
                error = UnprocessableError(
                    ErrorClass.SCHEMA_INVALID,
                    f"names routing policy version {event.policy_version}, which is not stored",
                    event.document_id,
                )
                await self._dead_letters.send(record, error, consumed_topic=topics.CLASSIFIED)
            else:
                ready.append((record, event, policy))
        return ready

    async def apply_batch(self, decoded: Sequence[Ready]) -> None:
        """Apply a batch's decisions in one transaction, then publish the routings together.

        If the database refuses one effect (bad data), the batch is applied again one
        document at a time, so only that one goes to the dead letters.
        """
        started = time.perf_counter()
        decided = [(event, routing.decide(event, policy)) for _, event, policy in decoded]
        routed = {
            event.document_id: self.routed(event, decision)
            for event, decision in decided
            if isinstance(decision, routing.RouteTo)
        }
        try:
            with tracing.working("store", triage__documents=len(decided)):
                results = await self._outcomes.apply_batch(
                    [
                        (event, decision, routed.get(event.document_id))
                        for event, decision in decided
                    ]
                )
        except (OperationalError, InterfaceError):
            raise
        except SQLAlchemyError:
            log.warning("the database refused a batch; applying its documents one at a time")
            for record, event, policy in decoded:
                await self.apply_one(record, event, policy)
            return
        publish: list[uuid.UUID] = []
        for (event, decision), result in zip(decided, results, strict=True):
            if isinstance(result, StoredRoute):
                publish.append(self.stored_route(event, result))
            elif isinstance(decision, routing.SendToReview):
                was_reviewed(event, decision, opened=bool(result))
        with tracing.working("publish", triage__events=len(publish)):
            await self._outbox.publish(publish)
        elapsed = (time.perf_counter() - started) / max(1, len(decided))
        for _, decision in decided:
            EVENTS_CONSUMED.labels(SERVICE, topics.CLASSIFIED, "ok").inc()
            outcome = "routed" if isinstance(decision, routing.RouteTo) else "review"
            PROCESS_SECONDS.labels(outcome).observe(elapsed)

    async def apply_one(
        self, record: ConsumedRecord, event: DocumentClassifiedV1, policy: RoutingPolicy
    ) -> None:
        """Apply one routing decision in a transaction of its own."""
        started = time.perf_counter()
        decision = routing.decide(event, policy)
        try:
            if isinstance(decision, routing.RouteTo):
                await self.route(event, decision)
            else:
                await self.review(event, decision)
        except (OperationalError, InterfaceError):
            raise
        except SQLAlchemyError as exc:
            # The database refused this message's effect (bad data): no retry will fix it,
            # and it must not hold up the partition.
            cause = getattr(exc, "orig", None) or exc
            error = UnprocessableError(
                ErrorClass.STORAGE_ERROR,
                f"the database refused the effect: {type(cause).__name__}",
                event.document_id,
            )
            await self._dead_letters.send(record, error, consumed_topic=topics.CLASSIFIED)
            return
        EVENTS_CONSUMED.labels(SERVICE, topics.CLASSIFIED, "ok").inc()
        outcome = "routed" if isinstance(decision, routing.RouteTo) else "review"
        PROCESS_SECONDS.labels(outcome).observe(time.perf_counter() - started)

    async def route(self, event: DocumentClassifiedV1, decision: routing.RouteTo) -> None:
        """Store a routing with its event in the outbox, then publish that event."""
        stored = await self._outcomes.record_route(
            event, decision, routed=self.routed(event, decision)
        )
        await self._outbox.publish([self.stored_route(event, stored)])

    def stored_route(self, event: DocumentClassifiedV1, stored: StoredRoute) -> uuid.UUID:
        """Count and log what storing a routing did; the event id to publish.

        A routing stored earlier (a redelivery) is published again only if it is still
        pending in the outbox (a crash after the commit): the outbox publishes each once.
        """
        if stored.in_review:
            kept_first_outcome(event, "review")
        elif stored.created:
            was_routed(event, stored.queue, sampled=stored.sampled)
        else:
            DUPLICATES.inc()
        return stored.event_id

    async def review(self, event: DocumentClassifiedV1, decision: routing.SendToReview) -> None:
        """Open a review item, unless the document has an outcome already."""
        was_reviewed(event, decision, opened=await self._outcomes.open_review(event, decision))

    def routed(self, event: DocumentClassifiedV1, decision: routing.RouteTo) -> Routed:
        """The DocumentRouted a routing decision publishes, and its topic."""
        routed = routing.routed_event(event, decision, producer=self._producer)
        return self._settings.topic(topics.routed_topic(decision.queue)), routed


def was_routed(event: DocumentClassifiedV1, queue: str, *, sampled: bool = False) -> None:
    """Count and log a routing that is now stored (its event in the outbox); ``sampled``:
    with a blind quality-sample review item."""
    DECISIONS.labels("routed", ReviewReason.QUALITY_SAMPLE.value if sampled else "").inc()
    END_TO_END_SECONDS.labels("routed").observe(
        (utcnow() - event.document.received_at).total_seconds()
    )
    log.info(
        "document routed",
        extra={
            "document_id": event.document_id,
            "trace_id": event.trace_id,
            "queue": queue,
            "model_version": event.model.version if event.model else None,
            "quality_sample": sampled,
        },
    )


def was_reviewed(
    event: DocumentClassifiedV1, decision: routing.SendToReview, *, opened: bool
) -> None:
    """Count and log a review item opened (or not: the document had an outcome)."""
    if not opened:
        DUPLICATES.inc()
        return
    DECISIONS.labels("review", decision.reason.value).inc()
    END_TO_END_SECONDS.labels("review").observe(
        (utcnow() - event.document.received_at).total_seconds()
    )
    log.info(
        "document sent to review",
        extra={
            "document_id": event.document_id,
            "trace_id": event.trace_id,
            "reason": decision.reason.value,
            "model_version": event.model.version,
        },
    )


def kept_first_outcome(event: DocumentClassifiedV1, outcome: str) -> None:
    """A redelivered document scored differently keeps the outcome it already has."""
    DUPLICATES.inc()
    log.info(
        "document already has an outcome; the new score changes nothing",
        extra={
            "document_id": event.document_id,
            "trace_id": event.trace_id,
            "outcome": outcome,
            "model_version": event.model.version,
        },
    )
