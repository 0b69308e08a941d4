"""The event contract: what producers may emit and consumers may rely on."""

from __future__ import annotations

import json
import uuid
from typing import cast

import pytest
from faststream.kafka.subscriber.usecase import LogicSubscriber
from pydantic import ValidationError

from tests.helpers import PRODUCER, REPO_ROOT, classified, document_ref, received
from tests.unit.inmemory import in_memory_broker
from triage_classifier.app import subscribe as classifier_subscribe
from triage_classifier.batches import MicroBatchScorer
from triage_classifier.settings import Settings as ClassifierSettings
from triage_contracts import (
    EVENT_TYPES,
    DocumentReceivedV1,
    DocumentRoutedV1,
    ExtractionStatus,
    Prediction,
    derive_document_id,
    schema_key,
    topics,
)
from triage_contracts.asyncapi import build_asyncapi, render_asyncapi
from triage_contracts.headers import headers_for
from triage_router.app import subscribe as router_subscribe
from triage_router.routing_handler import RoutingHandler
from triage_router.settings import Settings as RouterSettings
from triage_runtime.lag import Holdings
from triage_runtime.service import package_version


def test_document_id_is_stable_and_depends_on_every_part() -> None:
    a = derive_document_id("upload", "http-upload", "ab" * 32)
    assert a == derive_document_id("upload", "http-upload", "ab" * 32)
    assert a != derive_document_id("upload", "other-source", "ab" * 32)
    assert a != derive_document_id("imap", "http-upload", "ab" * 32)
    assert a.startswith("doc_") and len(a) == 36


def test_events_are_frozen_and_refuse_unknown_fields() -> None:
    event = received()
    with pytest.raises(ValidationError):
        event.document_id = "doc_" + "0" * 32  # type: ignore[misc]
    payload = json.loads(event.model_dump_json())
    payload["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        DocumentReceivedV1.model_validate(payload)


def test_round_trip_through_json_keeps_every_field() -> None:
    event = classified()
    again = type(event).model_validate_json(event.model_dump_json())
    assert again == event
    assert again.model is not None and again.model.version == "tfidf-lr-test"


def test_envelope_names_schema_producer_and_trace() -> None:
    event = received()
    assert (event.schema_name, event.schema_version) == ("DocumentReceived", 1)
    assert event.producer == PRODUCER
    assert len(event.trace_id) == 32
    assert isinstance(event.event_id, uuid.UUID)
    assert event.occurred_at.tzinfo is not None


def test_naive_timestamps_are_refused() -> None:
    payload = json.loads(received().model_dump_json())
    payload["occurred_at"] = "2026-11-26T09:00:00"
    with pytest.raises(ValidationError, match="occurred_at"):
        DocumentReceivedV1.model_validate(payload)


def test_prediction_action_must_follow_its_threshold() -> None:
    with pytest.raises(ValidationError, match="contradicts"):
        Prediction(
            label="billing",
            confidence=0.5,
            probabilities={"billing": 0.5},
            threshold=0.9,
            action="route",
        )


def test_a_prediction_needs_extracted_text() -> None:
    ok = classified()
    payload = json.loads(ok.model_dump_json())
    payload["extraction"]["status"] = "encrypted"
    with pytest.raises(ValidationError, match="requires extraction status ok"):
        type(ok).model_validate(payload)
    assert classified(status=ExtractionStatus.ENCRYPTED).prediction is None


def test_classified_events_must_name_their_model() -> None:
    payload = json.loads(classified().model_dump_json())
    del payload["model"]
    with pytest.raises(ValidationError, match="model"):
        type(classified()).model_validate(payload)


def test_headers_mirror_the_envelope() -> None:
    event = classified()
    headers = headers_for(event)
    assert headers["triage-schema"] == "DocumentClassified.v1"
    assert headers["triage-event-id"] == str(event.event_id)
    assert headers["triage-document-id"] == event.document_id
    assert headers["triage-trace-id"] == event.trace_id
    assert headers["triage-producer"] == "tests/0"
    assert headers["triage-model-version"] == "tfidf-lr-test"
    assert headers["triage-model-role"] == "champion"
    assert "triage-model-version" not in headers_for(received())


def test_routed_topics_are_per_queue_and_validated() -> None:
    assert topics.routed_topic("billing") == "triage.routed.billing.v1"
    with pytest.raises(ValueError, match="queue name"):
        topics.routed_topic("../etc")


def test_routed_event_accepts_only_label_shaped_queues() -> None:
    with pytest.raises(ValidationError):
        DocumentRoutedV1(
            producer=PRODUCER,
            document_id=received().document_id,
            queue="Billing Dept",
            decided_by="model",
            document=document_ref(),
        )


def test_asyncapi_lists_every_event_and_topic() -> None:
    doc = build_asyncapi(version="test")
    messages = doc["components"]["messages"]
    assert {m["name"] for m in messages.values()} == {schema_key(t) for t in EVENT_TYPES}
    addresses = {c["address"] for c in doc["channels"].values()}
    assert set(topics.ALL_FIXED) <= addresses
    for op in doc["operations"].values():
        channel_id = op["channel"]["$ref"].rsplit("/", 1)[1]
        assert channel_id in doc["channels"]


def test_committed_asyncapi_document_is_current() -> None:
    committed = (REPO_ROOT / "docs" / "asyncapi.json").read_text()
    assert committed == render_asyncapi(version=package_version("triage-contracts")), (
        "docs/asyncapi.json is stale: run `uv run triage contracts asyncapi`"
    )


def test_asyncapi_kafka_bindings_are_the_declared_topics() -> None:
    doc = build_asyncapi(version="test")
    bindings = {c["address"]: c["bindings"]["kafka"] for c in doc["channels"].values()}
    declared = {s.name: s for s in topics.declared_topics(["billing"])}
    routed = declared[topics.routed_topic("billing")]
    declared["triage.routed.{queue}.v1"] = routed
    assert set(bindings) == set(declared) - {routed.name}
    for address, binding in bindings.items():
        spec = declared[address]
        assert binding["topic"] == address
        assert (binding["partitions"], binding["replicas"]) == (
            spec.partitions,
            spec.replication_factor,
        )
        assert binding["topicConfiguration"] == {
            "cleanup.policy": [spec.cleanup_policy],
            "retention.ms": spec.retention_ms,
        }


def test_asyncapi_consumer_groups_are_the_ones_the_services_join() -> None:
    doc = build_asyncapi(version="test")
    documented = {
        (
            doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]["address"],
            op["bindings"]["kafka"]["groupId"]["enum"][0],
        )
        for op in doc["operations"].values()
        if op["action"] == "receive"
    }
    broker = in_memory_broker()
    classifier_subscribe(
        broker, ClassifierSettings(), cast(MicroBatchScorer, None), holdings=Holdings()
    )
    router_subscribe(broker, RouterSettings(), cast(RoutingHandler, None), holdings=Holdings())
    subscribers = [s for s in broker.subscribers if isinstance(s, LogicSubscriber)]
    assert len(subscribers) == len(broker.subscribers)
    joined = {
        (topic, subscriber.group_id)
        for subscriber in subscribers
        for topic in subscriber.topic_names
    }
    assert documented == joined
