"""Classifier service wiring: micro-batches from Kafka (``batches``), POST /v1/classify
(``routes``) and the drift gauges (``drift_export``), all served by one ``ModelSource``, so the
streaming and real-time answers for the same text are the same Prediction.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from triage_classifier import domain, routes
from triage_classifier.batches import MicroBatchScorer
from triage_classifier.drift_export import DriftExporter
from triage_classifier.metrics import SERVICE
from triage_classifier.model_source import Models, ModelSource
from triage_classifier.settings import Settings
from triage_contracts import topics
from triage_ml import drift, scoring
from triage_ml.model_thread import ModelThread
from triage_runtime.apikeys import ApiKeys
from triage_runtime.blobstore import BlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.http import RequestBodyLimit, RequestMetrics
from triage_runtime.kafka import DeadLetters, batch_subscriber, make_broker
from triage_runtime.kafka_start import KafkaStart
from triage_runtime.lag import Holdings, LagMonitor
from triage_runtime.ops import ops_router
from triage_runtime.service import producer_for

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, blobs: BlobStore | None = None) -> FastAPI:
    """Build the classifier app; the model loads and Kafka connects only when it starts.

    ``blobs`` replaces the configured blob store (fault-injection tests use it).
    """
    settings = settings or Settings()
    producer = producer_for(SERVICE, "triage-classifier")
    broker = make_broker(settings, client_id="triage-classifier")
    source = ModelSource(settings)
    engine = make_async_engine(settings.database_url, pool_size=2)
    holdings = Holdings()
    lag = LagMonitor(
        settings,
        service=SERVICE,
        group_id=settings.group_id,
        holdings=holdings,
        label=lambda topic: topic.removeprefix(settings.topic_prefix),
        interval=settings.lag_interval_seconds,
    )
    monitor = (
        drift.DriftMonitor(
            max_documents=settings.drift_window,
            thresholds=drift.DriftThresholds(min_documents=settings.drift_min_documents),
        )
        if settings.drift_window
        else None
    )
    # Every model call runs on this one thread (see triage_ml.model_thread).
    model_thread = ModelThread(torch_threads=settings.torch_threads, name="scoring")
    pool = settings.extraction_pool()
    reader = scoring.DocumentReader(
        blobs=blobs or settings.open_blob_store(), pool=pool, max_bytes=settings.max_document_bytes
    )
    dead_letters = DeadLetters(
        broker, topic=settings.topic(topics.DEADLETTER), service=SERVICE, producer=producer
    )
    scorer = MicroBatchScorer(
        broker=broker,
        settings=settings,
        models=source,
        reader=reader,
        dead_letters=dead_letters,
        model_thread=model_thread,
        producer=producer,
        drift_monitor=monitor,
    )
    subscribe(broker, settings, scorer, holdings=holdings)
    exporter = (
        DriftExporter(
            monitor=monitor, models=source, interval_seconds=settings.drift_interval_seconds
        )
        if monitor is not None
        else None
    )

    async def with_kafka(stack: AsyncExitStack) -> None:
        await lag.start()
        stack.push_async_callback(lag.stop)

    kafka = KafkaStart(broker, settings, then=with_kafka)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await source.start()
            stack.push_async_callback(source.stop)
            if exporter is not None:
                exporter.start()
                stack.push_async_callback(exporter.stop)
            stack.callback(pool.close)
            stack.callback(model_thread.close)
            stack.push_async_callback(engine.dispose)
            await stack.enter_async_context(kafka.running())
            yield
        log.info("stopped cleanly")

    app = FastAPI(
        title="Triage classifier",
        summary="Scores documents: micro-batches from Kafka, and POST /v1/classify.",
        version=producer.version,
        lifespan=lifespan,
    )
    app.state.kafka = kafka  # how its Kafka start is going (tests read it)
    app.add_middleware(RequestBodyLimit, limit=lambda: settings.max_classify_request_bytes)
    app.include_router(
        ops_router(
            service=SERVICE,
            checks={
                "kafka": kafka.ready,
                "model": partial(model_ready, source),
            },
            reasons={"kafka": kafka.why_not_ready},
            detail=source.describe,
            metrics_token=settings.metrics_token,
        )
    )
    routes.use(
        app, settings=settings, api_keys=ApiKeys(engine), models=source, model_thread=model_thread
    )
    # Added last, so it runs first and counts every answer, middleware's own included.
    app.add_middleware(RequestMetrics, service=SERVICE)
    return app


def subscribe(
    broker: KafkaBroker, settings: Settings, scorer: MicroBatchScorer, *, holdings: Holdings
) -> None:
    """What the classifier listens to: the documents topic, and the retry topic in a group of
    its own; each micro-batch's offsets commit once ``scorer`` has handled it (NACK on error)."""

    @batch_subscriber(
        broker,
        settings.topic(topics.DOCUMENTS),
        group_id=settings.group_id,
        max_records=settings.batch_max_records,
        poll_ms=settings.batch_timeout_ms,
        listener=holdings,
    )
    async def on_documents(message: KafkaMessage) -> None:
        """A micro-batch from the documents topic."""
        await scorer.process(message.raw_message, topics.DOCUMENTS)

    @batch_subscriber(
        broker,
        settings.topic(topics.DOCUMENTS_RETRY),
        group_id=topics.retry_group(settings.group_id),
        max_records=settings.batch_max_records,
        poll_ms=domain.retry_poll_ms(
            backoff_seconds=settings.retry_backoff_seconds,
            documents_poll_ms=settings.batch_timeout_ms,
        ),
    )
    async def on_retries(message: KafkaMessage) -> None:
        """Set-aside documents, processed once they are due."""
        await scorer.process_when_due(message.raw_message)


async def model_ready(models: Models) -> bool:
    """Readiness of the model: a trained one serves, not the rules fallback."""
    serving = models.serving
    return serving is not None and not serving.degraded
