"""Router service wiring: confident scores to their queue's topic, the rest to the review
queue (``routing_handler.RoutingHandler`` applies each batch)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from triage_contracts import topics
from triage_router.metrics import SERVICE
from triage_router.routing_handler import RoutingHandler
from triage_router.settings import Settings
from triage_runtime.db.engine import database_reachable, make_async_engine
from triage_runtime.http import RequestMetrics
from triage_runtime.kafka import DeadLetters, batch_subscriber, make_broker
from triage_runtime.kafka_start import KafkaStart
from triage_runtime.lag import Holdings, LagMonitor
from triage_runtime.ops import ops_router
from triage_runtime.outbox import Outbox
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.policy_store import PolicyCache, PolicyStore
from triage_runtime.service import producer_for

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the router app; Kafka and PostgreSQL connect only when it starts."""
    settings = settings or Settings()
    producer = producer_for(SERVICE, "triage-router")
    broker = make_broker(settings, client_id="triage-router")
    engine = make_async_engine(settings.database_url)
    dead_letters = DeadLetters(
        broker, topic=settings.topic(topics.DEADLETTER), service=SERVICE, producer=producer
    )
    outbox = Outbox(engine, broker, service=SERVICE, topic_prefix=settings.topic_prefix)
    handler = RoutingHandler(
        settings=settings,
        outcomes=OutcomeStore(engine),
        outbox=outbox,
        policies=PolicyCache(PolicyStore(engine)),
        dead_letters=dead_letters,
        producer=producer,
    )
    holdings = Holdings()
    subscribe(broker, settings, handler, holdings=holdings)
    lag = LagMonitor(
        settings,
        service=SERVICE,
        group_id=settings.group_id,
        holdings=holdings,
        label=lambda topic: topic.removeprefix(settings.topic_prefix),
        interval=settings.lag_interval_seconds,
    )

    async def with_kafka(stack: AsyncExitStack) -> None:
        await stack.enter_async_context(
            outbox.relaying(interval=settings.outbox_relay_seconds, keep=settings.outbox_keep)
        )
        await lag.start()
        stack.push_async_callback(lag.stop)

    kafka = KafkaStart(broker, settings, then=with_kafka)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)
            await stack.enter_async_context(kafka.running())
            yield
        log.info("stopped cleanly")

    app = FastAPI(
        title="Triage router",
        summary="Routes classified documents to queues or to human review.",
        version=producer.version,
        lifespan=lifespan,
    )
    app.state.kafka = kafka  # how its Kafka start is going (tests read it)
    app.include_router(
        ops_router(
            service=SERVICE,
            checks={
                "kafka": kafka.ready,
                "database": partial(database_reachable, engine),
            },
            reasons={"kafka": kafka.why_not_ready},
            metrics_token=settings.metrics_token,
        )
    )
    # Added last, so it runs first and counts every answer, middleware's own included.
    app.add_middleware(RequestMetrics, service=SERVICE)
    return app


def subscribe(
    broker: KafkaBroker, settings: Settings, handler: RoutingHandler, *, holdings: Holdings
) -> None:
    """What the router listens to: the classified topic, in batches whose offsets commit only
    after ``handler`` has made their effects durable and published their routings; and the
    dead-letter topic, to record the outcome of documents that went no further."""

    @batch_subscriber(
        broker,
        settings.topic(topics.CLASSIFIED),
        group_id=settings.group_id,
        max_records=settings.batch_max_records,
        poll_ms=settings.batch_timeout_ms,
        listener=holdings,
    )
    async def on_classified(message: KafkaMessage) -> None:
        """A batch of classified events (NACK on error: redelivered)."""
        await handler.handle(message.raw_message)

    @batch_subscriber(
        broker,
        settings.topic(topics.DEADLETTER),
        group_id=topics.dead_letter_group(settings.group_id),
        max_records=settings.batch_max_records,
        poll_ms=100,
    )
    async def on_dead_letters(message: KafkaMessage) -> None:
        """A batch of dead letters: their documents' outcome (NACK on error: redelivered)."""
        await handler.handle_dead_letters(message.raw_message)
