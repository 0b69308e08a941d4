"""Build the AsyncAPI 3.0 document from the contract classes (pure; the CLI writes it out)."""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from triage_contracts import headers, topics
from triage_contracts.events import (
    EVENT_TYPES,
    DeadLetterV1,
    DocumentClassifiedV1,
    DocumentReceivedV1,
    DocumentRoutedV1,
    DocumentWithdrawnV1,
    Event,
    ReviewDecisionRetractedV1,
    ReviewDecisionV1,
    schema_key,
)

ASYNCAPI_VERSION = "3.0.0"

# channel id -> (address, event classes, description)
_CHANNELS: dict[str, tuple[str, tuple[type[Event], ...], str]] = {
    "documents": (
        topics.DOCUMENTS,
        (DocumentReceivedV1,),
        "Every accepted document, keyed by document id.",
    ),
    "documentsRetry": (
        topics.DOCUMENTS_RETRY,
        (DocumentReceivedV1,),
        "Documents whose processing failed for a transient reason, with the attempt and the "
        "time it is due in the triage-attempt and triage-retry-at headers; after the last "
        "attempt they go to the dead-letter topic.",
    ),
    "classified": (
        topics.CLASSIFIED,
        (DocumentClassifiedV1,),
        "Scores from the champion and canary models, keyed by document id.",
    ),
    "classifiedShadow": (
        topics.CLASSIFIED_SHADOW,
        (DocumentClassifiedV1,),
        "Scores from the shadow model; never routed.",
    ),
    "routed": (
        "triage.routed.{queue}.v1",
        (DocumentRoutedV1, DocumentWithdrawnV1),
        "One topic per operational queue; downstream consumers read their queue's topic. "
        "A replay after a rollback may withdraw a document (DocumentWithdrawn) and route it "
        "elsewhere (a DocumentRouted whose supersedes_event_id names the withdrawn event).",
    ),
    "reviewDecisions": (
        topics.REVIEW_DECISIONS,
        (ReviewDecisionV1, ReviewDecisionRetractedV1),
        "Human review decisions; they feed the next training set. A decision undone by its "
        "author or reopened by an admin is retracted (ReviewDecisionRetracted naming it): "
        "keep, per review item, the latest decision no retraction names.",
    ),
    "deadletter": (
        topics.DEADLETTER,
        (DeadLetterV1,),
        "Messages a stage could not process, with an error class and the original bytes.",
    ),
}

# (operation id, action, channel id, event class, summary)
_OPERATIONS: tuple[tuple[str, str, str, type[Event], str], ...] = (
    (
        "ingestPublishesDocument",
        "send",
        "documents",
        DocumentReceivedV1,
        "ingest stores the bytes in the blob store, then publishes the document.",
    ),
    (
        "classifierConsumesDocument",
        "receive",
        "documents",
        DocumentReceivedV1,
        "classifier extracts text and scores documents in micro-batches.",
    ),
    (
        "classifierSchedulesRetry",
        "send",
        "documentsRetry",
        DocumentReceivedV1,
        "classifier sets a document aside for a later attempt when the blob store fails.",
    ),
    (
        "classifierConsumesRetry",
        "receive",
        "documentsRetry",
        DocumentReceivedV1,
        "classifier processes a set-aside document once it is due.",
    ),
    (
        "classifierPublishesScore",
        "send",
        "classified",
        DocumentClassifiedV1,
        "classifier publishes one score per document, tagged with the model version and role.",
    ),
    (
        "routerConsumesScore",
        "receive",
        "classified",
        DocumentClassifiedV1,
        "router applies the action: a queue topic, or a review_item row in PostgreSQL.",
    ),
    (
        "routerPublishesRouted",
        "send",
        "routed",
        DocumentRoutedV1,
        "router publishes confident results to their queue's topic.",
    ),
    (
        "reviewUiPublishesDecision",
        "send",
        "reviewDecisions",
        ReviewDecisionV1,
        "review UI publishes each human decision once (outbox relay).",
    ),
    (
        "reviewUiRetractsDecision",
        "send",
        "reviewDecisions",
        ReviewDecisionRetractedV1,
        "review UI retracts a decision its author undid or an admin reopened.",
    ),
    (
        "reviewUiPublishesRouted",
        "send",
        "routed",
        DocumentRoutedV1,
        "review UI routes a decided document to its queue (decided_by: human).",
    ),
    (
        "replayPublishesCorrection",
        "send",
        "routed",
        DocumentRoutedV1,
        "triage replay routes a re-scored document to its new queue, naming what it supersedes.",
    ),
    (
        "replayPublishesWithdrawal",
        "send",
        "routed",
        DocumentWithdrawnV1,
        "triage replay withdraws a document from the queue it no longer belongs to.",
    ),
    (
        "routerRecordsDeadLetter",
        "receive",
        "deadletter",
        DeadLetterV1,
        "router records the outcome of a document that went no further (triage dlq lists them).",
    ),
    (
        "classifierDeadLetters",
        "send",
        "deadletter",
        DeadLetterV1,
        "classifier dead-letters messages it cannot decode or process.",
    ),
    (
        "routerDeadLetters",
        "send",
        "deadletter",
        DeadLetterV1,
        "router dead-letters messages it cannot decode or process.",
    ),
)


def _message_id(event_type: type[Event]) -> str:
    return schema_key(event_type).replace(".", "_")


def _headers_schema() -> dict[str, Any]:
    described = {
        headers.SCHEMA: "Schema name and version, e.g. DocumentReceived.v1",
        headers.EVENT_ID: "The event id (UUID); consumers deduplicate on it",
        headers.DOCUMENT_ID: "The document id, also the message key",
        headers.TRACE_ID: "Trace id carried from ingest to routing",
        headers.PRODUCER: "service/version of the producer",
        headers.MODEL_VERSION: "Model version, where a model was involved",
        headers.MODEL_ROLE: "Model role (champion, canary, shadow, rules)",
        headers.CONTENT_TYPE: "Always application/json",
        headers.TRACEPARENT: (
            "W3C trace context: 00-<the trace id>-<id of the span that sent it>-<flags>"
        ),
    }
    return {
        "type": "object",
        "properties": {k: {"type": "string", "description": v} for k, v in described.items()},
        "required": [headers.SCHEMA, headers.EVENT_ID, headers.TRACE_ID, headers.PRODUCER],
    }


def _kafka_binding(address: str) -> dict[str, Any]:
    """The channel's Kafka binding, from the declared topic list (``triage topics apply``)."""
    fixed = {spec.name: spec for spec in topics.FIXED_SPECS}
    spec = fixed[address] if address in fixed else topics.routed_spec(address)
    return {
        "topic": address,
        "partitions": spec.partitions,
        "replicas": spec.replication_factor,
        "topicConfiguration": {
            "cleanup.policy": [spec.cleanup_policy],
            "retention.ms": spec.retention_ms,
        },
        "bindingVersion": "0.5.0",
    }


_CONSUMER_GROUPS = {
    "classifierConsumesDocument": topics.CLASSIFIER_GROUP,
    "classifierConsumesRetry": topics.retry_group(topics.CLASSIFIER_GROUP),
    "routerConsumesScore": topics.ROUTER_GROUP,
    "routerRecordsDeadLetter": topics.dead_letter_group(topics.ROUTER_GROUP),
}
"""Each receive operation's default consumer group (the base is a setting of its service)."""


def _group_binding(group: str) -> dict[str, Any]:
    return {
        "kafka": {
            "groupId": {
                "type": "string",
                "enum": [group],
                "description": "the default; the service's GROUP_ID setting replaces the base",
            },
            "bindingVersion": "0.5.0",
        }
    }


def build_asyncapi(*, version: str) -> dict[str, Any]:
    """Return the AsyncAPI document for every channel, message and operation in the contract."""
    _, schemas = models_json_schema(
        [(cls, "serialization") for cls in EVENT_TYPES],
        ref_template="#/components/schemas/{model}",
    )
    messages: dict[str, Any] = {}
    for cls in EVENT_TYPES:
        messages[_message_id(cls)] = {
            "name": schema_key(cls),
            "title": cls.__name__,
            "summary": (cls.__doc__ or "").strip(),
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/TriageHeaders"},
            "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
            "bindings": {"kafka": {"key": {"type": "string", "description": "document id"}}},
        }
    component_schemas: dict[str, Any] = dict(schemas.get("$defs", {}))
    component_schemas["TriageHeaders"] = _headers_schema()

    channels: dict[str, Any] = {}
    for channel_id, (address, classes, description) in _CHANNELS.items():
        channel: dict[str, Any] = {
            "address": address,
            "description": description,
            "bindings": {"kafka": _kafka_binding(address)},
            "messages": {
                _message_id(c): {"$ref": f"#/components/messages/{_message_id(c)}"} for c in classes
            },
        }
        if "{queue}" in address:
            channel["parameters"] = {
                "queue": {"description": "Operational queue name (a model label)."}
            }
        channels[channel_id] = channel

    operations: dict[str, Any] = {}
    for op_id, action, channel_id, cls, summary in _OPERATIONS:
        operations[op_id] = {
            "action": action,
            "summary": summary,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{_message_id(cls)}"}],
        }
        if action == "receive":
            operations[op_id]["bindings"] = _group_binding(_CONSUMER_GROUPS[op_id])

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Triage events",
            "version": version,
            "description": (
                "Events exchanged by Triage's services on Kafka. Generated from "
                "libs/contracts by `triage contracts asyncapi`; do not edit by hand."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:19092",
                "protocol": "kafka",
                "description": "The local development stack (deploy/local/stack.sh).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": component_schemas},
    }


def render_asyncapi(*, version: str) -> str:
    """Return the AsyncAPI document as stable, pretty JSON text."""
    return json.dumps(build_asyncapi(version=version), indent=2, sort_keys=True) + "\n"
