"""Classifier service: consumes DocumentReceived in micro-batches, publishes DocumentClassified."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage

from triage_classifier import domain
from triage_classifier.metrics import (
    BATCH_SIZE,
    CONFIDENCE,
    EXTRACT_SECONDS,
    EXTRACTION_FAILURES,
    MODEL_INFO,
    MODEL_LOAD_SECONDS,
    PREDICTIONS,
    SCORE_SECONDS,
)
from triage_classifier.settings import Settings
from triage_contracts import (
    DocumentReceivedV1,
    ErrorClass,
    ExtractionStatus,
    ModelRef,
    ModelRole,
    topics,
)
from triage_ml import model as model_lib
from triage_ml.features import ExtractedText, extract_text
from triage_runtime.blobstore import BlobNotFoundError
from triage_runtime.kafka import (
    ConsumedRecord,
    DeadLetters,
    UnprocessableError,
    decode_event,
    make_broker,
    publish_event,
)
from triage_runtime.metrics import EVENTS_CONSUMED, EVENTS_PRODUCED
from triage_runtime.ops import ops_router
from triage_runtime.service import producer_for

SERVICE = "classifier"
log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the classifier app; the model loads and Kafka connects only when it starts."""
    settings = settings or Settings()
    producer = producer_for(SERVICE, "triage-classifier")
    broker = make_broker(settings.kafka_bootstrap, client_id="triage-classifier")
    blobs = settings.open_blob_store()
    dead_letters = DeadLetters(
        broker, topic=settings.topic(topics.DEADLETTER), service=SERVICE, producer=producer
    )
    state: dict[str, model_lib.LoadedModel] = {}

    def extract(received: DocumentReceivedV1) -> domain.Extracted:
        blob = received.document.blob
        if blob.size_bytes > settings.max_document_bytes:
            return domain.Extracted(received, ExtractedText(ExtractionStatus.TOO_LARGE))
        try:
            data = blobs.get(blob.sha256)
        except BlobNotFoundError as exc:
            raise UnprocessableError(
                ErrorClass.BLOB_MISSING,
                f"blob {blob.sha256} is not in the blob store",
                received.document_id,
            ) from exc
        try:
            text = extract_text(data, blob.media_type, max_bytes=settings.max_document_bytes)
        except Exception:  # a hostile document must not block its partition (logged)
            log.exception("extraction raised; treating the document as corrupt")
            text = ExtractedText(ExtractionStatus.CORRUPT)
        if text.status is not ExtractionStatus.OK:
            EXTRACTION_FAILURES.labels(text.status.value).inc()
        return domain.Extracted(received, text)

    @broker.subscriber(
        settings.topic(topics.DOCUMENTS),
        group_id=settings.group_id,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_documents(message: KafkaMessage) -> None:
        """Extract, score and publish a micro-batch; offsets commit after every publish."""
        records: tuple[ConsumedRecord, ...] = message.raw_message
        model = state["champion"]
        model_ref = ModelRef(version=model.version, role=ModelRole.CHAMPION)
        BATCH_SIZE.observe(len(records))

        started = time.perf_counter()
        batch: list[domain.Extracted] = []
        for record in records:
            try:
                received = decode_event(record.value, DocumentReceivedV1)
                batch.append(await asyncio.to_thread(extract, received))
            except UnprocessableError as exc:
                await dead_letters.send(record, exc, consumed_topic=topics.DOCUMENTS)
        EXTRACT_SECONDS.observe(time.perf_counter() - started)

        started = time.perf_counter()
        events = await asyncio.to_thread(
            domain.classify, batch, model=model, model_ref=model_ref, producer=producer
        )
        SCORE_SECONDS.labels(model.version).observe(time.perf_counter() - started)

        for event in events:
            await publish_event(broker, settings.topic(topics.CLASSIFIED), event)
            EVENTS_PRODUCED.labels(SERVICE, topics.CLASSIFIED).inc()
            EVENTS_CONSUMED.labels(SERVICE, topics.DOCUMENTS, "ok").inc()
            if event.prediction is not None:
                CONFIDENCE.labels(model.version, model_ref.role.value).observe(
                    event.prediction.confidence
                )
                PREDICTIONS.labels(
                    model.version,
                    model_ref.role.value,
                    event.prediction.label,
                    event.prediction.action.value,
                ).inc()
            log.info(
                "document classified",
                extra={
                    "document_id": event.document_id,
                    "trace_id": event.trace_id,
                    "model_version": model.version,
                    "extraction": event.extraction.status.value,
                    "label": event.prediction.label if event.prediction else None,
                    "action": event.prediction.action.value if event.prediction else "review",
                },
            )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        model = await asyncio.to_thread(model_lib.load, settings.model_path)
        MODEL_LOAD_SECONDS.set(time.perf_counter() - started)
        MODEL_INFO.labels(model.version, ModelRole.CHAMPION.value).set(1)
        state["champion"] = model
        log.info("model loaded", extra={"model_version": model.version})
        await broker.start()
        yield
        await broker.stop()
        log.info("stopped cleanly")

    async def kafka_ready() -> bool:
        return await broker.ping(timeout=2.0)

    async def model_ready() -> bool:
        return "champion" in state

    app = FastAPI(
        title="Triage classifier",
        summary="Scores documents with the champion model.",
        version=producer.version,
        lifespan=lifespan,
    )
    app.include_router(
        ops_router(service=SERVICE, checks={"kafka": kafka_ready, "model": model_ready})
    )
    return app
