"""Micro-batches of DocumentReceived: read, score by the role each partition has, publish,
and set aside what failed for a transient reason; sampled documents are shadow-scored too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from faststream.kafka import KafkaBroker

from triage_classifier import domain
from triage_classifier.metrics import (
    BATCH_SIZE,
    CONFIDENCE,
    EXTRACT_SECONDS,
    EXTRACTION_FAILURES,
    PREDICTIONS,
    RETRIES,
    SCORE_SECONDS,
    SERVICE,
    SHADOW_FAILURES,
)
from triage_classifier.model_source import Models, Serving
from triage_classifier.settings import Settings
from triage_contracts import (
    DocumentClassifiedV1,
    ErrorClass,
    ExtractionStatus,
    ModelRef,
    ModelRole,
    Producer,
    topics,
)
from triage_contracts import headers as header_names
from triage_ml import drift, scoring
from triage_ml.model import FeatureTap
from triage_ml.model_thread import ModelThread
from triage_runtime import tracing
from triage_runtime.kafka import (
    ConsumedRecord,
    DeadLetters,
    RetryableError,
    UnprocessableError,
    header_dict,
    publish_events,
)
from triage_runtime.metrics import EVENTS_CONSUMED, EVENTS_PRODUCED

log = logging.getLogger(__name__)


class MicroBatchScorer:
    """Turns a batch of consumed records into DocumentClassified events on the classified
    topic; every record ends published, set aside for a retry, or a dead letter.

    Offsets commit after ``process`` returns, so everything here is done (and acknowledged
    by Kafka) before they do; an exception leaves the batch to be redelivered.
    """

    def __init__(
        self,
        *,
        broker: KafkaBroker,
        settings: Settings,
        models: Models,
        reader: scoring.DocumentReader,
        dead_letters: DeadLetters,
        model_thread: ModelThread,
        producer: Producer,
        drift_monitor: drift.DriftMonitor | None = None,
    ) -> None:
        self._broker = broker
        self._settings = settings
        self._models = models
        self._reader = reader
        self._dead_letters = dead_letters
        self._model_thread = model_thread
        self._producer = producer
        self._drift = drift_monitor

    async def process(self, records: Sequence[ConsumedRecord], consumed: str) -> None:
        """Extract, score and publish a micro-batch read from ``consumed`` (unprefixed).

        Records from the canary's partitions are scored by the canary (when one serves), the
        rest by the champion; sampled documents are also scored by the shadow model (all as
        the routing policy in force says). The batch is one span (``classify <topic>``) with
        a span for each step, linked to each record's own trace.
        """
        with tracing.batch(
            f"classify {consumed}",
            messaging__destination__name=consumed,
            messaging__batch__message_count=len(records),
        ):
            await self._process(records, consumed)

    async def _process(self, records: Sequence[ConsumedRecord], consumed: str) -> None:
        champion = self._models.serving
        if champion is None:
            raise RuntimeError("no model in service yet")  # redelivered once one is
        canary = self._models.canary
        BATCH_SIZE.observe(len(records))

        started = time.perf_counter()
        with tracing.working("read"):
            batch = await self._read(records, consumed)
        EXTRACT_SECONDS.observe(time.perf_counter() - started)

        scored = await self._score_by_role(batch, champion, canary)
        # In the order read, so each key keeps its order; acknowledged together.
        events = [scored[item.received.document_id] for item in batch]
        with tracing.working("publish", triage__events=len(events)):
            await publish_events(self._broker, self._settings.topic(topics.CLASSIFIED), events)
        for event in events:
            EVENTS_PRODUCED.labels(SERVICE, topics.CLASSIFIED).inc()
            EVENTS_CONSUMED.labels(SERVICE, consumed, "ok").inc()
            observe(event)
            _log_classified(event)
        await self.publish_shadow(batch)

    async def process_when_due(self, records: Sequence[ConsumedRecord]) -> None:
        """Set-aside documents: wait until the batch is due, then process it like any other.

        Only the retry topic's partition waits; the documents topic flows on meanwhile.
        """
        wait = domain.retry_wait(
            (int(header_dict(r.headers).get(header_names.RETRY_AT, "0")) for r in records),
            now=time.time(),
            longest_seconds=self._settings.retry_backoff_max_seconds,
        )
        if wait > 0:
            await asyncio.sleep(wait)
        await self.process(records, topics.DOCUMENTS_RETRY)

    async def set_aside(self, record: ConsumedRecord, error: RetryableError, consumed: str) -> None:
        """Put a record on the retry topic with its next attempt's time, or give up on it."""
        settings = self._settings
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
            await self._dead_letters.send(record, giving_up, consumed_topic=consumed)
            return
        attempt, delay = plan.attempt, plan.delay_seconds
        headers |= {
            header_names.ATTEMPT: str(attempt),
            header_names.RETRY_AT: str(int((time.time() + delay) * 1000)),
            header_names.SOURCE_PARTITION: headers.get(
                header_names.SOURCE_PARTITION, str(record.partition)
            ),
        }
        await self._broker.publish(
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

    async def score(
        self, items: Sequence[scoring.Extracted], serving: Serving
    ) -> list[DocumentClassifiedV1]:
        """One model call for ``items``, timed under the model's version; a champion's or a
        canary's call is also counted into its drift window."""
        if not items:
            return []
        model_ref = ModelRef(version=serving.model.version, role=serving.role)
        window = None
        if self._drift is not None and serving.role in domain.DRIFT_ROLES:
            window = self._drift.batch_window(serving.model.version, serving.model.metadata)
        model = serving.model
        if window is not None:
            # The tap reuses the features the model computes to score: no second pass.
            model = model.tapped(drift_observer(window, model_ref))
        started = time.perf_counter()
        with tracing.working(
            f"score {serving.role.value}",
            triage__model_version=model_ref.version,
            triage__documents=len(items),
        ):
            events = await self._model_thread.run(
                partial(
                    scoring.classify,
                    items,
                    model=model,
                    model_ref=model_ref,
                    producer=self._producer,
                    policy=self._models.policy,
                )
            )
        SCORE_SECONDS.labels(model_ref.version).observe(time.perf_counter() - started)
        if self._drift is not None and window is not None and window.documents:
            self._drift.add(model_ref.version, model_ref.role.value, window)
        return events

    async def publish_shadow(self, batch: Sequence[scoring.Extracted]) -> None:
        """Score the sampled documents with the shadow model; a failure never blocks routing."""
        shadow = self._models.shadow
        if shadow is None:
            return
        policy = self._models.policy
        sampled = [
            item
            for item in batch
            if item.text.status is ExtractionStatus.OK
            and policy.in_shadow_sample(item.received.document_id)
        ]
        try:
            events = await self.score(sampled, shadow)
            topic = self._settings.topic(topics.CLASSIFIED_SHADOW)
            await publish_events(self._broker, topic, events)
            for event in events:
                EVENTS_PRODUCED.labels(SERVICE, topics.CLASSIFIED_SHADOW).inc()
                observe(event)
        except Exception:
            SHADOW_FAILURES.inc()
            log.exception("shadow scoring failed", extra={"model_version": shadow.model.version})

    async def _read(
        self, records: Sequence[ConsumedRecord], consumed: str
    ) -> list[scoring.Extracted]:
        """Read a batch (scoring.DocumentReader): what cannot be processed goes to the dead
        letters, what failed for a transient reason to the retry topic."""
        read = await self._reader.read(records)
        for record, error in read.dead:
            await self._dead_letters.send(record, error, consumed_topic=consumed)
        for record, retryable in read.retry:
            await self.set_aside(record, retryable, consumed)
        for item in read.extracted:
            if item.text.status is not ExtractionStatus.OK:
                EXTRACTION_FAILURES.labels(item.text.status.value).inc()
        return read.extracted

    async def _score_by_role(
        self, batch: Sequence[scoring.Extracted], champion: Serving, canary: Serving | None
    ) -> dict[str, DocumentClassifiedV1]:
        """Each document's event, scored by the canary on its partitions, else the champion."""
        policy = self._models.policy
        groups: dict[ModelRole, list[scoring.Extracted]] = {}
        for item in batch:
            role = policy.role_for(item.partition, has_canary=canary is not None)
            groups.setdefault(role, []).append(item)
        scored: dict[str, DocumentClassifiedV1] = {}
        for role, items in groups.items():
            serving = canary if role is ModelRole.CANARY and canary is not None else champion
            for event in await self.score(items, serving):
                scored[event.document_id] = event
        return scored


def observe(event: DocumentClassifiedV1) -> None:
    """Count a scored event's prediction: its confidence, label and action."""
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


def _log_classified(event: DocumentClassifiedV1) -> None:
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


def drift_observer(window: drift.Window, model_ref: ModelRef) -> FeatureTap:
    """Count each scoring call into ``window``; a failure is logged and scoring goes on."""

    def observe_scores(texts: Sequence[str], features: Any, probabilities: Any) -> None:
        """Count one scoring call (runs in the scoring thread)."""
        try:
            window.observe_scores(texts, probabilities, features)
        except Exception:
            log.exception(
                "drift observation failed; scoring goes on",
                extra={"model_version": model_ref.version, "model_role": model_ref.role.value},
            )

    return observe_scores
