"""Kafka plumbing shared by the services: the broker, event encoding, headers, dead letters."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from aiokafka import ConsumerRebalanceListener
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber
from pydantic import ValidationError

from triage_contracts import DeadLetterV1, ErrorClass, Event, Producer
from triage_contracts import headers as header_names
from triage_contracts.events import is_trace_id, new_trace_id
from triage_contracts.headers import headers_for
from triage_runtime import tracing
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.metrics import DEAD_LETTERS, EVENTS_CONSUMED

E = TypeVar("E", bound=Event)

MAX_DEADLETTER_VALUE_BYTES = 512 * 1024
"""Originals larger than this are cut in the dead-letter record (the broker's limit is 1 MiB)."""

log = logging.getLogger(__name__)


class ConsumedRecord(Protocol):
    """The parts of an aiokafka ConsumerRecord that Triage reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any


class UnprocessableError(Exception):
    """A message that no retry will fix; it goes to the dead-letter topic with this class."""

    def __init__(self, error_class: ErrorClass, reason: str, document_id: str | None = None):
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason
        self.document_id = document_id


class RetryableError(Exception):
    """A failure that may pass (a dependency did not answer): try the message again later."""

    def __init__(self, reason: str, document_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.document_id = document_id


def make_broker(kafka: KafkaConnection, *, client_id: str) -> KafkaBroker:
    """Return an unconnected broker whose producer is idempotent and waits for all replicas.

    ``kafka`` says where the cluster is and how to log in (TLS, SASL).

    Topics are never created by a service with its own partition count (faststream would make
    one partition): the cluster's defaults, or the operator, decide how many partitions a topic
    has, and partitions are what canary traffic and consumer scaling are measured in.
    """
    return KafkaBroker(
        kafka.kafka_bootstrap,
        security=kafka.faststream_security(),
        client_id=client_id,
        allow_auto_create_topics=False,
        enable_idempotence=True,
        acks="all",
        graceful_timeout=15.0,
        log_level=logging.DEBUG,
        # A logger of our own, so FastStream adds no coloured text handler of its own to it:
        # its records reach the JSON handler (triage_runtime.logs).
        logger=logging.getLogger("faststream.kafka"),
    )


def batch_subscriber(
    broker: KafkaBroker,
    topic: str,
    *,
    group_id: str,
    max_records: int,
    poll_ms: int,
    listener: ConsumerRebalanceListener | None = None,
) -> BatchSubscriber:
    """The subscriber decorator every consumer uses: batches from the earliest offset a new
    group sees, committed only after the handler returns; an exception seeks back, so the
    batch is read again (at least once, with idempotent effects). ``listener`` hears of
    rebalances (``triage_runtime.lag.Holdings`` keeps the partitions held, for lag)."""
    return broker.subscriber(
        topic,
        group_id=group_id,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=poll_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        listener=listener,
    )


def encode_event(event: Event) -> bytes:
    """Return the JSON bytes of ``event`` as they go on the wire."""
    return event.model_dump_json().encode()


def decode_event(value: bytes | None, event_type: type[E]) -> E:
    """Parse a message value as ``event_type`` or raise UnprocessableError with the reason."""
    if value is None:
        raise UnprocessableError(ErrorClass.UNDECODABLE, "message has no value (tombstone)")
    try:
        return event_type.model_validate_json(value)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise UnprocessableError(ErrorClass.UNDECODABLE, "value is not valid JSON") from exc
        # Field locations and error types only: input values may hold personal data.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['type']}"
            for err in exc.errors()[:10]
        )
        raise UnprocessableError(
            ErrorClass.SCHEMA_INVALID, f"not a valid {event_type.__name__}: {problems}"
        ) from exc


def decode_record(record: ConsumedRecord, event_type: type[E]) -> E:
    """Decode a consumed record as ``decode_event`` does, and record the span of taking it
    (``triage_runtime.tracing``): every consumer decodes through this."""
    event = decode_event(record.value, event_type)
    tracing.consumed(
        event,
        header_dict(record.headers),
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    )
    return event


async def publish_event(broker: KafkaBroker, topic: str, event: Event) -> None:
    """Publish ``event`` keyed by its document id, with its envelope mirrored in headers
    and its trace's ``traceparent``; its ``send`` span lasts until the broker acknowledges."""
    document_id: str | None = getattr(event, "document_id", None)
    span, traceparent = tracing.start_send(topic, event)
    try:
        await broker.publish(
            encode_event(event),
            topic,
            key=document_id.encode() if document_id else None,
            headers=headers_for(event) | traceparent,
        )
    finally:
        span.end()


async def publish_events(broker: KafkaBroker, topic: str, events: Sequence[Event]) -> None:
    """Publish ``events`` to ``topic`` in order, as ``publish_event`` does; wait for every ack."""
    await publish_many(broker, [(topic, event) for event in events])


async def publish_many(broker: KafkaBroker, items: Sequence[tuple[str, Event]]) -> None:
    """Publish each (topic, event) in order, as ``publish_event`` does; wait for every ack.

    The records are handed to the producer together and acknowledged together, so a batch
    costs about one round trip, not one per event; the producer keeps their order within
    a partition. If any send fails this raises, and nothing says which others landed: the
    caller redelivers the whole batch (consumers tolerate duplicates).
    """
    pending = []
    spans = []
    try:
        for topic, event in items:
            document_id: str | None = getattr(event, "document_id", None)
            span, traceparent = tracing.start_send(topic, event)
            spans.append(span)
            sent = await broker.publish(
                encode_event(event),
                topic,
                key=document_id.encode() if document_id else None,
                headers=headers_for(event) | traceparent,
                no_confirm=True,
            )
            # FastStream's in-memory TestKafkaBroker delivers at once and hands back no future.
            if sent is not None:
                pending.append(sent)
        results = await asyncio.gather(*pending, return_exceptions=True)
    finally:
        for span in spans:
            span.end()
    for result in results:
        if isinstance(result, BaseException):
            raise result


def header_dict(raw: Any) -> dict[str, str]:
    """Return a record's headers as a dict of strings."""
    out: dict[str, str] = {}
    for name, value in raw or ():
        if isinstance(value, bytes):
            out[str(name)] = value.decode("utf-8", errors="replace")
        else:
            out[str(name)] = str(value)
    return out


def dead_letter_for(
    record: ConsumedRecord,
    *,
    stage: str,
    producer: Producer,
    error: UnprocessableError,
) -> DeadLetterV1:
    """Build the dead-letter record for ``record``, keeping its original bytes."""
    value = record.value or b""
    headers = header_dict(record.headers)
    # In the document's trace, when the record says which (a tool's record may not).
    trace_id = headers.get(header_names.TRACE_ID, "")
    return DeadLetterV1(
        producer=producer,
        trace_id=trace_id if is_trace_id(trace_id) else new_trace_id(),
        document_id=error.document_id,
        stage=stage,
        error_class=error.error_class,
        reason=error.reason[:500],
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        original_key=record.key.decode("utf-8", errors="replace") if record.key else None,
        original_value_b64=base64.b64encode(value[:MAX_DEADLETTER_VALUE_BYTES]).decode(),
        original_headers=headers,
    )


class DeadLetters:
    """Sends what a consumer cannot process to the dead-letter topic, and counts it."""

    def __init__(
        self, broker: KafkaBroker, *, topic: str, service: str, producer: Producer
    ) -> None:
        self._broker = broker
        self._topic = topic
        self._service = service
        self._producer = producer
        # Every class starts at 0, so the first dead letter of a class is an increase that
        # alerts see (a counter born at 1 would show none).
        for error_class in ErrorClass:
            DEAD_LETTERS.labels(service, error_class.value)

    async def send(
        self, record: ConsumedRecord, error: UnprocessableError, *, consumed_topic: str
    ) -> DeadLetterV1:
        """Publish the dead letter for ``record``; ``consumed_topic`` is its unprefixed topic."""
        letter = dead_letter_for(record, stage=self._service, producer=self._producer, error=error)
        await publish_event(self._broker, self._topic, letter)
        DEAD_LETTERS.labels(self._service, letter.error_class.value).inc()
        EVENTS_CONSUMED.labels(self._service, consumed_topic, "deadlettered").inc()
        # The class and the position, never the content: it may hold personal data.
        log.warning(
            "dead-lettered a message",
            extra={
                "stage": letter.stage,
                "error_class": letter.error_class.value,
                "source_topic": letter.source_topic,
                "source_partition": letter.source_partition,
                "source_offset": letter.source_offset,
                "document_id": letter.document_id,
            },
        )
        return letter
