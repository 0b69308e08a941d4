"""Classifier service: scores DocumentReceived in micro-batches and answers POST /v1/classify.

Both paths use the same feature code and the same model object (``ModelSource``), so the
streaming and real-time answers for the same text are the same Prediction.

The streaming path also feeds a drift monitor (``triage_ml.drift``): each micro-batch scored
by the champion or the canary is counted, from the feature vectors the model computes anyway,
into a rolling window of that model version and role; every ``drift_interval_seconds`` the
windows are compared with the models' training baselines and exported as gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import APIKeyHeader
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage

from triage_classifier import domain
from triage_classifier.metrics import (
    BATCH_SIZE,
    CLASSIFY_REQUESTS,
    CLASSIFY_SECONDS,
    CONFIDENCE,
    DRIFT_CENTROID_DISTANCE,
    DRIFT_PSI,
    DRIFT_WINDOW_DOCUMENTS,
    EXTRACT_SECONDS,
    EXTRACTION_FAILURES,
    PREDICTIONS,
    RETRIES,
    SCORE_SECONDS,
    SHADOW_FAILURES,
)
from triage_classifier.model_source import ModelSource, Serving
from triage_classifier.settings import Settings
from triage_contracts import (
    DocumentClassifiedV1,
    ErrorClass,
    Extraction,
    ExtractionStatus,
    ModelRef,
    ModelRole,
    topics,
)
from triage_contracts import headers as header_names
from triage_contracts.inference import ClassifyRequestV1, ClassifyResponseV1
from triage_ml import drift, scoring
from triage_ml.model import FeatureTap
from triage_ml.model_thread import ModelThread
from triage_runtime.apikeys import ApiKeys, KeyHolder
from triage_runtime.blobstore import BlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.http import RequestBodyLimit
from triage_runtime.kafka import (
    ConsumedRecord,
    DeadLetters,
    RetryableError,
    UnprocessableError,
    header_dict,
    make_broker,
    publish_events,
)
from triage_runtime.lag import LagMonitor
from triage_runtime.metrics import EVENTS_CONSUMED, EVENTS_PRODUCED
from triage_runtime.ops import ops_router
from triage_runtime.service import producer_for
from triage_text.extract import extract_text

SERVICE = "classifier"
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")
DRIFT_ROLES = frozenset({ModelRole.CHAMPION, ModelRole.CANARY})
log = logging.getLogger(__name__)


def _gauge_value(signal: drift.Signal) -> float:
    """A signal's value for its gauge: NaN unless there were enough documents to judge it."""
    if signal.value is None or signal.status not in {drift.Status.OK, drift.Status.DRIFT}:
        return math.nan
    return signal.value


def _drift_observer(window: drift.Window, model_ref: ModelRef) -> FeatureTap:
    """Count each scoring call into ``window``; a failure is logged and scoring goes on."""

    def observe(texts: Sequence[str], features: Any, probabilities: Any) -> None:
        """Count one scoring call (runs in the scoring thread)."""
        try:
            window.observe_scores(texts, probabilities, features)
        except Exception:
            log.exception(
                "drift observation failed; scoring goes on",
                extra={"model_version": model_ref.version, "model_role": model_ref.role.value},
            )

    return observe


async def current_caller(
    request: Request, key: Annotated[str | None, Depends(API_KEY_HEADER)]
) -> KeyHolder | None:
    """Who calls POST /v1/classify: the holder of a live API key (401 otherwise)."""
    settings: Settings = request.app.state.settings
    if not settings.require_api_key:
        return None
    api_keys: ApiKeys = request.app.state.api_keys
    holder = await api_keys.holder(key) if key else None
    if holder is None:
        CLASSIFY_REQUESTS.labels("401").inc()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid X-API-Key header is required",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    return holder


Caller = Annotated[KeyHolder | None, Depends(current_caller)]


def create_app(settings: Settings | None = None, *, blobs: BlobStore | None = None) -> FastAPI:
    """Build the classifier app; the model loads and Kafka connects only when it starts.

    ``blobs`` replaces the configured blob store (fault-injection tests use it).
    """
    settings = settings or Settings()
    producer = producer_for(SERVICE, "triage-classifier")
    broker = make_broker(settings.kafka_bootstrap, client_id="triage-classifier")
    blob_store = blobs or settings.open_blob_store()
    dead_letters = DeadLetters(
        broker, topic=settings.topic(topics.DEADLETTER), service=SERVICE, producer=producer
    )
    source = ModelSource(settings)
    engine = make_async_engine(settings.database_url, pool_size=2)
    api_keys = ApiKeys(engine)
    lag = LagMonitor(
        settings.kafka_bootstrap,
        service=SERVICE,
        group_id=settings.group_id,
        topics=[settings.topic(topics.DOCUMENTS)],
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

    drift_exported: set[tuple[str, str]] = set()
    drift_unavailable_logged: set[str] = set()
    pool = settings.extraction_pool()
    reader = scoring.DocumentReader(
        blobs=blob_store, pool=pool, max_bytes=settings.max_document_bytes
    )

    async def set_aside(record: ConsumedRecord, error: RetryableError, consumed: str) -> None:
        """Put a record on the retry topic with its next attempt's time, or give up on it."""
        headers = header_dict(record.headers)
        attempts = int(headers.get(header_names.ATTEMPT, "0"))
        plan = domain.next_retry(
            attempts,
            max_attempts=settings.retry_max_attempts,
            backoff_seconds=settings.retry_backoff_seconds,
            backoff_max_seconds=settings.retry_backoff_max_seconds,
        )
        if plan is None:
            reason = f"gave up after {attempts} attempt(s): {error.reason}"
            giving_up = UnprocessableError(ErrorClass.STORAGE_ERROR, reason, error.document_id)
            await dead_letters.send(record, giving_up, consumed_topic=consumed)
            return
        attempt, delay = plan.attempt, plan.delay_seconds
        headers |= {
            header_names.ATTEMPT: str(attempt),
            header_names.RETRY_AT: str(int((time.time() + delay) * 1000)),
            header_names.SOURCE_PARTITION: headers.get(
                header_names.SOURCE_PARTITION, str(record.partition)
            ),
        }
        await broker.publish(
            record.value,
            settings.topic(topics.DOCUMENTS_RETRY),
            key=record.key,
            headers=headers,
        )
        RETRIES.labels(str(attempt)).inc()
        EVENTS_CONSUMED.labels(SERVICE, consumed, "retried").inc()
        log.warning(
            "document set aside for a retry",
            extra={"document_id": error.document_id, "attempt": attempt, "delay_s": delay},
        )

    async def extract_batch(
        records: tuple[ConsumedRecord, ...], consumed: str
    ) -> list[scoring.Extracted]:
        """Read a batch (scoring.DocumentReader): what cannot be processed goes to the dead
        letters, what failed for a transient reason to the retry topic."""
        read = await reader.read(records)
        for record, error in read.dead:
            await dead_letters.send(record, error, consumed_topic=consumed)
        for record, retryable in read.retry:
            await set_aside(record, retryable, consumed)
        for item in read.extracted:
            if item.text.status is not ExtractionStatus.OK:
                EXTRACTION_FAILURES.labels(item.text.status.value).inc()
        return read.extracted

    async def score(items: list[scoring.Extracted], serving: Serving) -> list[DocumentClassifiedV1]:
        """One model call for ``items``, timed under the model's version."""
        if not items:
            return []
        model_ref = ModelRef(version=serving.model.version, role=serving.role)
        window = None
        if monitor is not None and serving.role in DRIFT_ROLES:
            window = monitor.batch_window(serving.model.version, serving.model.metadata)
        model = serving.model
        if window is not None:
            # The tap reuses the features the model computes to score: no second pass.
            model = model.tapped(_drift_observer(window, model_ref))
        started = time.perf_counter()
        events = await model_thread.run(
            partial(
                scoring.classify,
                items,
                model=model,
                model_ref=model_ref,
                producer=producer,
                policy=source.policy,
            )
        )
        SCORE_SECONDS.labels(model_ref.version).observe(time.perf_counter() - started)
        if monitor is not None and window is not None and window.documents:
            monitor.add(model_ref.version, model_ref.role.value, window)
        return events

    async def publish_shadow(batch: list[scoring.Extracted]) -> None:
        """Score the sampled documents with the shadow model; a failure never blocks routing."""
        shadow = source.shadow
        if shadow is None:
            return
        sampled = [
            item
            for item in batch
            if item.text.status is ExtractionStatus.OK
            and source.policy.in_shadow_sample(item.received.document_id)
        ]
        try:
            events = await score(sampled, shadow)
            await publish_events(broker, settings.topic(topics.CLASSIFIED_SHADOW), events)
            for event in events:
                EVENTS_PRODUCED.labels(SERVICE, topics.CLASSIFIED_SHADOW).inc()
                observe(event)
        except Exception:
            SHADOW_FAILURES.inc()
            log.exception("shadow scoring failed", extra={"model_version": shadow.model.version})

    def observe(event: DocumentClassifiedV1) -> None:
        prediction = event.prediction
        if prediction is not None:
            CONFIDENCE.labels(event.model.version, event.model.role.value).observe(
                prediction.confidence
            )
            PREDICTIONS.labels(
                event.model.version,
                event.model.role.value,
                prediction.label,
                prediction.action.value,
            ).inc()

    async def process(records: tuple[ConsumedRecord, ...], consumed: str) -> None:
        """Extract, score and publish a micro-batch; offsets commit after every publish.

        Records from the canary's partitions are scored by the canary (when one serves), the
        rest by the champion; sampled documents are also scored by the shadow model (all as
        the routing policy in force says).
        """
        champion = source.serving
        if champion is None:
            raise RuntimeError("no model in service yet")  # redelivered once one is
        canary = source.canary
        BATCH_SIZE.observe(len(records))

        started = time.perf_counter()
        batch = await extract_batch(records, consumed)
        EXTRACT_SECONDS.observe(time.perf_counter() - started)

        policy = source.policy
        groups: dict[ModelRole, list[scoring.Extracted]] = {}
        for item in batch:
            role = policy.role_for(item.partition, has_canary=canary is not None)
            groups.setdefault(role, []).append(item)
        scored: dict[str, DocumentClassifiedV1] = {}
        for role, items in groups.items():
            serving = canary if role is ModelRole.CANARY and canary is not None else champion
            for event in await score(items, serving):
                scored[event.document_id] = event

        # In the order read, so each key keeps its order; acknowledged together.
        events = [scored[item.received.document_id] for item in batch]
        await publish_events(broker, settings.topic(topics.CLASSIFIED), events)
        for event in events:
            EVENTS_PRODUCED.labels(SERVICE, topics.CLASSIFIED).inc()
            EVENTS_CONSUMED.labels(SERVICE, consumed, "ok").inc()
            observe(event)
            prediction = event.prediction
            log.info(
                "document classified",
                extra={
                    "document_id": event.document_id,
                    "trace_id": event.trace_id,
                    "model_version": event.model.version,
                    "model_role": event.model.role.value,
                    "extraction": event.extraction.status.value,
                    "label": prediction.label if prediction else None,
                    "action": prediction.action.value if prediction else "review",
                },
            )
        await publish_shadow(batch)

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
        """A micro-batch from the documents topic."""
        await process(message.raw_message, topics.DOCUMENTS)

    @broker.subscriber(
        settings.topic(topics.DOCUMENTS_RETRY),
        # A group of its own: joining the documents group would rebalance it (and redeliver).
        group_id=f"{settings.group_id}.retry",
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=domain.retry_poll_ms(
            backoff_seconds=settings.retry_backoff_seconds,
            documents_poll_ms=settings.batch_timeout_ms,
        ),
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_retries(message: KafkaMessage) -> None:
        """Set-aside documents: wait until the batch is due, then process it like any other.

        Only the retry topic's partition waits; the documents topic flows on meanwhile.
        """
        records: tuple[ConsumedRecord, ...] = message.raw_message
        due = max(
            (int(header_dict(r.headers).get(header_names.RETRY_AT, "0")) for r in records),
            default=0,
        )
        wait = min(due / 1000 - time.time(), settings.retry_backoff_max_seconds)
        if wait > 0:
            await asyncio.sleep(wait)
        await process(records, topics.DOCUMENTS_RETRY)

    def export_drift(drift_monitor: drift.DriftMonitor) -> None:
        """Compare each serving model's window with its baseline and set the drift gauges.

        Series of models no longer serving are removed, so the labels stay bounded.
        """
        serving = [
            s for s in (source.serving, source.canary) if s is not None and s.role in DRIFT_ROLES
        ]
        reports = drift_monitor.reports(
            (s.model.version, s.role.value, s.model.metadata) for s in serving
        )
        for s in serving:
            reason = drift_monitor.unavailable(s.model.version)
            if reason and s.model.version not in drift_unavailable_logged:
                drift_unavailable_logged.add(s.model.version)
                log.info(
                    "drift monitoring unavailable: %s",
                    reason,
                    extra={"model_version": s.model.version, "model_role": s.role.value},
                )
        forget_drift(drift_exported - reports.keys())
        for (version, role), report in reports.items():
            for name in drift.PSI_SIGNALS:
                DRIFT_PSI.labels(version, role, name).set(_gauge_value(report.signal(name)))
            DRIFT_CENTROID_DISTANCE.labels(version, role).set(
                _gauge_value(report.signal(drift.CENTROID))
            )
            DRIFT_WINDOW_DOCUMENTS.labels(version, role).set(report.documents)
        drift_exported.clear()
        drift_exported.update(reports)

    def forget_drift(keys: set[tuple[str, str]]) -> None:
        """Remove the drift series of these (version, role) pairs."""
        for version, role in keys:
            with contextlib.suppress(KeyError):
                for name in drift.PSI_SIGNALS:
                    DRIFT_PSI.remove(version, role, name)
                DRIFT_CENTROID_DISTANCE.remove(version, role)
                DRIFT_WINDOW_DOCUMENTS.remove(version, role)

    async def drift_loop(drift_monitor: drift.DriftMonitor) -> None:
        """Export drift every interval until cancelled; a failure waits for the next one."""
        while True:
            await asyncio.sleep(settings.drift_interval_seconds)
            try:
                export_drift(drift_monitor)
            except Exception:
                log.exception("drift export failed; trying again next interval")

    async def stop_drift(task: asyncio.Task[None]) -> None:
        """Stop exporting and remove this app's drift series."""
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        forget_drift(set(drift_exported))
        drift_exported.clear()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await source.start()
            stack.push_async_callback(source.stop)
            if monitor is not None:
                task = asyncio.create_task(drift_loop(monitor), name="drift-export")
                stack.push_async_callback(stop_drift, task)
            stack.callback(pool.close)
            stack.callback(model_thread.close)
            stack.push_async_callback(engine.dispose)
            await broker.start()
            stack.push_async_callback(broker.stop)
            await lag.start()
            stack.push_async_callback(lag.stop)
            yield
        log.info("stopped cleanly")

    async def kafka_ready() -> bool:
        return await broker.ping(timeout=2.0)

    async def model_ready() -> bool:
        serving = source.serving
        return serving is not None and not serving.degraded

    app = FastAPI(
        title="Triage classifier",
        summary="Scores documents: micro-batches from Kafka, and POST /v1/classify.",
        version=producer.version,
        lifespan=lifespan,
    )
    app.add_middleware(RequestBodyLimit, limit=lambda: settings.max_classify_request_bytes)
    app.include_router(
        ops_router(
            service=SERVICE,
            checks={"kafka": kafka_ready, "model": model_ready},
            detail=source.describe,
            metrics_token=settings.metrics_token,
        )
    )

    app.state.settings = settings
    app.state.api_keys = api_keys

    @app.post(
        "/v1/classify",
        response_model=ClassifyResponseV1,
        summary="Classify text now, with the same model and contract as the Kafka path",
        responses={
            413: {"description": "The request body is over the size limit"},
            422: {"description": "Invalid input; field errors say which"},
            401: {"description": "No valid X-API-Key"},
            503: {"description": "No trained model is loaded; retry after Retry-After seconds"},
        },
    )
    async def classify(request: ClassifyRequestV1, _who: Caller) -> ClassifyResponseV1:
        started = time.perf_counter()
        serving = source.serving
        if serving is None or serving.degraded:
            CLASSIFY_REQUESTS.labels("503").inc()
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "no trained model is loaded",
                headers={"Retry-After": str(max(1, round(settings.model_refresh_seconds)))},
            )
        text = extract_text(request.text.encode(), "text/plain")
        if text.status is not ExtractionStatus.OK:
            CLASSIFY_REQUESTS.labels("422").inc()
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                [
                    {
                        "loc": ["body", "text"],
                        "msg": "no text is left after normalisation",
                        "type": "value_error.empty_text",
                    }
                ],
            )
        [prediction] = await model_thread.run(partial(serving.model.predict, [text.text]))
        prediction = source.policy.apply(serving.model.version, prediction)
        elapsed = time.perf_counter() - started
        CLASSIFY_SECONDS.observe(elapsed)
        CLASSIFY_REQUESTS.labels("200").inc()
        return ClassifyResponseV1(
            document_id=request.document_id,
            model=ModelRef(version=serving.model.version, role=serving.role),
            extraction=Extraction(status=text.status, chars=len(text.text), pages=None),
            prediction=prediction,
            latency_ms=round(elapsed * 1000, 3),
        )

    return app
