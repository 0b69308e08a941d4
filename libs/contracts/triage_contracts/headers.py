"""Kafka headers that mirror an event's key facts, so tools can filter without parsing JSON."""

from __future__ import annotations

from triage_contracts.events import Event, schema_key

SCHEMA = "triage-schema"
EVENT_ID = "triage-event-id"
DOCUMENT_ID = "triage-document-id"
TRACE_ID = "triage-trace-id"
PRODUCER = "triage-producer"
MODEL_VERSION = "triage-model-version"
MODEL_ROLE = "triage-model-role"
CONTENT_TYPE = "content-type"
TRACEPARENT = "traceparent"
"""W3C trace context: the trace (``TRACE_ID``'s value) and the span that sent the record;
written by the runtime's tracing (``triage_runtime.tracing``), not from the envelope."""

ALL = (SCHEMA, EVENT_ID, DOCUMENT_ID, TRACE_ID, PRODUCER, MODEL_VERSION, MODEL_ROLE, CONTENT_TYPE)

# On the retry topic only:
ATTEMPT = "triage-attempt"
"""Which retry this is (1 for the first)."""
RETRY_AT = "triage-retry-at"
"""When the retry is due, in milliseconds since the epoch."""
SOURCE_PARTITION = "triage-source-partition"
"""The documents-topic partition the record was first read from (canary routing uses it)."""
RETRY_ONLY = (ATTEMPT, RETRY_AT, SOURCE_PARTITION)


def headers_for(event: Event) -> dict[str, str]:
    """Return the header values that mirror ``event``'s envelope."""
    headers = {
        SCHEMA: schema_key(type(event)),
        EVENT_ID: str(event.event_id),
        TRACE_ID: event.trace_id,
        PRODUCER: f"{event.producer.service}/{event.producer.version}",
        CONTENT_TYPE: "application/json",
    }
    document_id: str | None = getattr(event, "document_id", None)
    if document_id:
        headers[DOCUMENT_ID] = document_id
    if event.model is not None:
        headers[MODEL_VERSION] = event.model.version
        headers[MODEL_ROLE] = event.model.role.value
    return headers
