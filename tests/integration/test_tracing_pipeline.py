"""One document through ingest, classifier and router on the real broker is one trace.

The three services run in this process (as in ``test_hostile_pipeline.py``) against the
real Kafka and PostgreSQL, recording spans into an in-memory exporter. A file dropped in the
drop folder goes through; its spans must all be in the trace of the document's trace id,
chained send -> process -> send -> process across the topics, and the record the router
took must carry a ``traceparent`` naming the classifier's ``send`` span and the event's own
trace id.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.kafkatools import collect
from tests.stack import Stack
from triage_classifier.app import create_app as classifier_app
from triage_classifier.settings import Settings as ClassifierSettings
from triage_contracts import topics
from triage_ingest.app import create_app as ingest_app
from triage_ingest.settings import Settings as IngestSettings
from triage_router.app import create_app as router_app
from triage_router.settings import Settings as RouterSettings
from triage_runtime import tracing


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(
        service="pipeline", otlp_endpoint=None, processors=[SimpleSpanProcessor(exporter)]
    )
    yield exporter
    tracing.configure_tracing(service="pipeline", otlp_endpoint=None)


def _named(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def test_one_document_is_one_trace_across_ingest_classifier_and_router(
    isolated: Stack,
    clean_db: str,
    tmp_path: Path,
    small_model: Path,
    spans: InMemorySpanExporter,
) -> None:
    drop = tmp_path / "drop"
    (drop / "inbox").mkdir(parents=True)
    common: dict[str, Any] = {
        "kafka_bootstrap": isolated.kafka_bootstrap,
        "database_url": clean_db,
        "blob_dir": tmp_path / "blobs",
        "topic_prefix": isolated.topic_prefix,
    }
    ingest = IngestSettings(**common, drop_dir=drop, drop_poll_seconds=0.2)
    classifier = ClassifierSettings(**common, model_path=small_model, group_id="otel-classifier")
    router = RouterSettings(**common, group_id="otel-router")
    documents = f"process {isolated.topic(topics.DOCUMENTS)}"
    classified = f"process {isolated.topic(topics.CLASSIFIED)}"
    route_batch = f"route {topics.CLASSIFIED}"

    with (
        TestClient(ingest_app(ingest)),
        TestClient(classifier_app(classifier)),
        TestClient(router_app(router)),
    ):
        letter = drop / "inbox" / "invoice.txt"
        letter.write_bytes(b"invoice payment overdue, please refund the charge")
        os.utime(letter, (time.time() - 5, time.time() - 5))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if route_batch in {span.name for span in spans.get_finished_spans()}:
                break
            time.sleep(0.2)
        finished = list(spans.get_finished_spans())

    names = [span.name for span in finished]
    assert classified in names, names
    root = _named(finished, f"send {isolated.topic(topics.DOCUMENTS)}")
    taken = _named(finished, documents)
    answered = _named(finished, f"send {isolated.topic(topics.CLASSIFIED)}")
    routed = _named(finished, classified)
    assert root.context is not None and root.attributes is not None
    trace_id = root.context.trace_id
    hops = [span for span in finished if span.name.startswith(("send ", "process "))]
    assert {span.context.trace_id for span in hops if span.context} == {trace_id}
    assert root.parent is None
    # The batches that took the record are traces of their own, linked both ways.
    by_id = {span.context.span_id: span for span in finished if span.context}
    for hop, batch_name in ((taken, f"classify {topics.DOCUMENTS}"), (routed, route_batch)):
        (link,) = hop.links
        batch = by_id[link.context.span_id]
        assert batch.name == batch_name
        assert batch.context is not None and batch.context.trace_id != trace_id
        assert hop.context is not None
        assert hop.context.span_id in {back.context.span_id for back in batch.links}
    # Each hop is the child of the one before it.
    for parent, child in ((root, taken), (taken, answered), (answered, routed)):
        assert child.parent is not None and parent.context is not None
        assert child.parent.span_id == parent.context.span_id, (parent.name, child.name)
    # The router's span names the document the ingest's did.
    assert routed.attributes is not None
    assert routed.attributes["triage.document_id"] == root.attributes["triage.document_id"]
    # On the wire: the classified record's traceparent is the classifier's send span, in the
    # trace of the event's own trace id.
    (record,) = asyncio.run(
        collect(
            isolated.kafka_bootstrap,
            [isolated.topic(topics.CLASSIFIED)],
            until=lambda messages: len(messages) >= 1,
        )
    )
    assert answered.context is not None
    assert record["value"]["trace_id"] == f"{trace_id:032x}"
    version, header_trace, parent_id, flags = record["headers"][tracing.TRACEPARENT].split("-")
    assert (version, header_trace) == ("00", f"{trace_id:032x}")
    assert int(parent_id, 16) == answered.context.span_id
    assert int(flags, 16) & 1
