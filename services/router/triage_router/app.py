"""Router service: confident scores to their queue's topic, the rest to the review queue."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from triage_contracts import (
    DocumentClassifiedV1,
    DocumentRoutedV1,
    ErrorClass,
    topics,
    utcnow,
)
from triage_router.metrics import DECISIONS, DUPLICATES, END_TO_END_SECONDS, PROCESS_SECONDS
from triage_router.settings import Settings
from triage_runtime import routing
from triage_runtime.db.engine import database_reachable, make_async_engine
from triage_runtime.kafka import (
    ConsumedRecord,
    DeadLetters,
    UnprocessableError,
    decode_event,
    make_broker,
    publish_event,
    publish_many,
)
from triage_runtime.lag import LagMonitor
from triage_runtime.metrics import EVENTS_CONSUMED, EVENTS_PRODUCED, topic_family
from triage_runtime.ops import ops_router
from triage_runtime.outcomes.store import OutcomeStore, StoredRoute
from triage_runtime.policy_store import PolicyCache, PolicyStore
from triage_runtime.routing import RoutingPolicy
from triage_runtime.service import producer_for

SERVICE = "router"
log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the router app; Kafka and PostgreSQL connect only when it starts."""
    settings = settings or Settings()
    producer = producer_for(SERVICE, "triage-router")
    broker = make_broker(settings.kafka_bootstrap, client_id="triage-router")
    engine = make_async_engine(settings.database_url)
    store = OutcomeStore(engine)
    dead_letters = DeadLetters(
        broker, topic=settings.topic(topics.DEADLETTER), service=SERVICE, producer=producer
    )
    policies = PolicyCache(PolicyStore(engine))
    lag = LagMonitor(
        settings.kafka_bootstrap,
        service=SERVICE,
        group_id=settings.group_id,
        topics=[settings.topic(topics.CLASSIFIED)],
        label=lambda topic: topic.removeprefix(settings.topic_prefix),
        interval=settings.lag_interval_seconds,
    )

    async def route(event: DocumentClassifiedV1, decision: routing.RouteTo) -> None:
        routed = routed_event(event, decision)
        stored = await store.record_route(event, decision, event_id=routed.event_id)
        if stored.in_review:
            _kept_first_outcome(event, "review")
            return
        if stored.published_at is not None:
            DUPLICATES.inc()
            return
        topic, routed = to_publish(routed, stored)
        await publish_event(broker, topic, routed)
        await store.mark_published(event.document_id)
        was_routed(event, stored.queue)

    def routed_event(event: DocumentClassifiedV1, decision: routing.RouteTo) -> DocumentRoutedV1:
        return DocumentRoutedV1(
            producer=producer,
            document_id=event.document_id,
            trace_id=event.trace_id,
            model=event.model,
            queue=decision.queue,
            decided_by=decision.decided_by,
            confidence=decision.confidence,
            document=event.document,
        )

    def to_publish(routed: DocumentRoutedV1, stored: StoredRoute) -> tuple[str, DocumentRoutedV1]:
        """The topic and event to publish for a stored routing."""
        # Re-publishing after a crash reuses the stored event id and queue, so consumers
        # that deduplicate on event id see one routing, whatever was redelivered.
        routed = routed.model_copy(update={"event_id": stored.event_id, "queue": stored.queue})
        return settings.topic(topics.routed_topic(stored.queue)), routed

    def was_routed(event: DocumentClassifiedV1 | DocumentRoutedV1, queue: str) -> None:
        """Count and log a routing that is now published."""
        EVENTS_PRODUCED.labels(SERVICE, topic_family(topics.routed_topic(queue))).inc()
        DECISIONS.labels("routed", "").inc()
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
            },
        )

    def _kept_first_outcome(event: DocumentClassifiedV1, outcome: str) -> None:
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

    async def review(event: DocumentClassifiedV1, decision: routing.SendToReview) -> None:
        was_reviewed(event, decision, opened=await store.open_review(event, decision))

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

    async def apply_one(
        record: ConsumedRecord, event: DocumentClassifiedV1, policy: RoutingPolicy
    ) -> None:
        """Apply one routing decision in a transaction of its own."""
        started = time.perf_counter()
        decision = routing.decide(event, policy)
        try:
            if isinstance(decision, routing.RouteTo):
                await route(event, decision)
            else:
                await review(event, decision)
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
            await dead_letters.send(record, error, consumed_topic=topics.CLASSIFIED)
            return
        EVENTS_CONSUMED.labels(SERVICE, topics.CLASSIFIED, "ok").inc()
        outcome = "routed" if isinstance(decision, routing.RouteTo) else "review"
        PROCESS_SECONDS.labels(outcome).observe(time.perf_counter() - started)

    async def apply_batch(
        decoded: list[tuple[ConsumedRecord, DocumentClassifiedV1, RoutingPolicy]],
    ) -> None:
        """Apply a batch's decisions in one transaction, then publish the routings together.

        If the database refuses one effect (bad data), the batch is applied again one
        document at a time, so only that one goes to the dead letters.
        """
        started = time.perf_counter()
        decided = [(event, routing.decide(event, policy)) for _, event, policy in decoded]
        routed = {
            event.document_id: routed_event(event, decision)
            for event, decision in decided
            if isinstance(decision, routing.RouteTo)
        }
        try:
            results = await store.apply_batch(
                [
                    (event, decision, routed[event.document_id].event_id)
                    if isinstance(decision, routing.RouteTo)
                    else (event, decision, uuid.uuid4())
                    for event, decision in decided
                ]
            )
        except (OperationalError, InterfaceError):
            raise
        except SQLAlchemyError:
            log.warning("the database refused a batch; applying its documents one at a time")
            for record, event, policy in decoded:
                await apply_one(record, event, policy)
            return
        publish: dict[str, tuple[str, DocumentRoutedV1]] = {}
        for (event, decision), result in zip(decided, results, strict=True):
            if isinstance(result, StoredRoute):
                if result.in_review:
                    _kept_first_outcome(event, "review")
                elif result.published_at is not None or event.document_id in publish:
                    DUPLICATES.inc()  # the second of one document in a batch, too
                else:
                    publish[event.document_id] = to_publish(routed[event.document_id], result)
            elif isinstance(decision, routing.SendToReview):
                was_reviewed(event, decision, opened=bool(result))
        await publish_many(broker, list(publish.values()))
        await store.mark_published_many(list(publish))
        for _, published in publish.values():
            was_routed(published, published.queue)
        elapsed = (time.perf_counter() - started) / max(1, len(decided))
        for _, decision in decided:
            EVENTS_CONSUMED.labels(SERVICE, topics.CLASSIFIED, "ok").inc()
            outcome = "routed" if isinstance(decision, routing.RouteTo) else "review"
            PROCESS_SECONDS.labels(outcome).observe(elapsed)

    async def with_policies(
        decoded: list[tuple[ConsumedRecord, DocumentClassifiedV1]],
    ) -> list[tuple[ConsumedRecord, DocumentClassifiedV1, RoutingPolicy]]:
        """Each event with the routing policy it names; an event naming a version the registry
        does not hold is a dead letter (no retry will make it appear)."""
        named = await policies.named({event.policy_version for _, event in decoded})
        ready = []
        for record, event in decoded:
            policy = named.get(event.policy_version)
            if policy is None:
                error = UnprocessableError(
                    ErrorClass.SCHEMA_INVALID,
                    f"names routing policy version {event.policy_version}, which is not stored",
                    event.document_id,
                )
                await dead_letters.send(record, error, consumed_topic=topics.CLASSIFIED)
            else:
                ready.append((record, event, policy))
        return ready

    @broker.subscriber(
        settings.topic(topics.CLASSIFIED),
        group_id=settings.group_id,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_classified(message: KafkaMessage) -> None:
        """Apply a batch of routing decisions; offsets commit only after their effects are
        durable and their routed events published."""
        decoded: list[tuple[ConsumedRecord, DocumentClassifiedV1]] = []
        for record in message.raw_message:
            try:
                decoded.append((record, decode_event(record.value, DocumentClassifiedV1)))
            except UnprocessableError as exc:
                await dead_letters.send(record, exc, consumed_topic=topics.CLASSIFIED)
        try:
            await apply_batch(await with_policies(decoded))
        except (OperationalError, InterfaceError):
            # The database is unreachable: every message would fail alike, so pause, then let
            # the batch be redelivered (NACK seeks back) rather than skip ahead.
            log.exception("database unavailable; the batch will be redelivered")
            EVENTS_CONSUMED.labels(SERVICE, topics.CLASSIFIED, "retried").inc(len(decoded))
            await asyncio.sleep(settings.storage_retry_seconds)
            raise

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await broker.start()
        await lag.start()
        yield
        await lag.stop()
        await broker.stop()
        await engine.dispose()
        log.info("stopped cleanly")

    async def kafka_ready() -> bool:
        return await broker.ping(timeout=2.0)

    async def database_ready() -> bool:
        return await database_reachable(engine)

    app = FastAPI(
        title="Triage router",
        summary="Routes classified documents to queues or to human review.",
        version=producer.version,
        lifespan=lifespan,
    )
    app.include_router(
        ops_router(
            service=SERVICE,
            checks={"kafka": kafka_ready, "database": database_ready},
            metrics_token=settings.metrics_token,
        )
    )
    return app
