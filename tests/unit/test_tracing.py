"""OpenTelemetry: the document's trace id is the trace, and ``traceparent`` rides on Kafka."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from aiokafka.structs import ConsumerRecord
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.helpers import classified, received
from tests.unit.inmemory import in_memory_broker
from triage_contracts import ErrorClass, Producer
from triage_runtime import tracing
from triage_runtime.kafka import (
    DeadLetters,
    UnprocessableError,
    dead_letter_for,
    decode_record,
    publish_event,
    publish_many,
)


def test_off_by_default_no_span_is_recorded_and_the_header_still_names_the_trace() -> None:
    assert tracing.configure_tracing(service="test", otlp_endpoint=None) is None
    event = received()
    span, headers = tracing.start_send("documents", event)
    span.end()
    assert not span.is_recording()
    version, trace_id, parent_id, flags = headers[tracing.TRACEPARENT].split("-")
    assert (version, trace_id, flags) == ("00", event.trace_id, "00")
    assert int(parent_id, 16) != 0


def test_the_first_send_is_the_root_of_the_documents_trace(
    spans: InMemorySpanExporter,
) -> None:
    event = received()
    span, headers = tracing.start_send("documents", event)
    span.end()
    (sent,) = spans.get_finished_spans()
    assert sent.parent is None
    assert sent.kind is SpanKind.PRODUCER
    assert sent.context is not None
    assert f"{sent.context.trace_id:032x}" == event.trace_id
    version, trace_id, parent_id, flags = headers[tracing.TRACEPARENT].split("-")
    assert (version, trace_id) == ("00", event.trace_id)
    assert int(parent_id, 16) == sent.context.span_id
    assert int(flags, 16) & 1  # sampled
    assert sent.attributes is not None
    assert sent.attributes["triage.document_id"] == event.document_id


def _span(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    (found,) = (span for span in spans if span.name == name)
    return found


async def test_one_hop_over_kafka_headers_is_one_trace(spans: InMemorySpanExporter) -> None:
    """Ingest sends, the classifier takes it (through the headers) and sends its result: the
    three spans are one chain in the trace of the document's trace id."""
    broker = in_memory_broker()
    taken: list[ConsumerRecord[bytes, bytes]] = []

    @broker.subscriber("documents")
    async def collect(message: KafkaMessage) -> None:
        taken.append(message.raw_message)

    document = received()
    async with TestKafkaBroker(broker):
        await publish_event(broker, "documents", document)
        (record,) = taken
        # A fresh process memory, as in the classifier's own process: only the header links.
        tracing._last_span.clear()
        assert decode_record(record, type(document)) == document
        result = classified().model_copy(update={"trace_id": document.trace_id})
        await publish_many(broker, [("classified", result)])

    finished = spans.get_finished_spans()
    sent = _span(finished, "send documents")
    taken_span = _span(finished, "process documents")
    answered = _span(finished, "send classified")
    assert {f"{s.context.trace_id:032x}" for s in finished if s.context} == {document.trace_id}
    assert sent.context is not None and taken_span.context is not None
    assert taken_span.kind is SpanKind.CONSUMER
    assert taken_span.parent is not None and taken_span.parent.span_id == sent.context.span_id
    assert answered.parent is not None
    assert answered.parent.span_id == taken_span.context.span_id


def test_a_record_without_traceparent_is_still_in_its_events_trace(
    spans: InMemorySpanExporter,
) -> None:
    """Records from before tracing (or from a tool) carry only the event's trace id."""
    event = received()
    tracing.consumed(event, {}, topic="documents", partition=0, offset=7)
    (taken,) = spans.get_finished_spans()
    assert taken.context is not None
    assert f"{taken.context.trace_id:032x}" == event.trace_id
    assert taken.attributes is not None
    assert taken.attributes["messaging.kafka.offset"] == 7


def test_a_traceparent_of_another_trace_gives_way_to_the_events_trace_id(
    spans: InMemorySpanExporter,
) -> None:
    event = received()
    foreign = f"00-{'ab' * 16}-{5:016x}-01"
    tracing.consumed(
        event, {tracing.TRACEPARENT: foreign}, topic="documents", partition=0, offset=1
    )
    (taken,) = spans.get_finished_spans()
    assert taken.context is not None
    assert f"{taken.context.trace_id:032x}" == event.trace_id
    assert taken.parent is None


def test_the_memory_of_traces_is_bounded(spans: InMemorySpanExporter) -> None:
    for _ in range(tracing.REMEMBERED_TRACES + 10):
        span, _headers = tracing.start_send("documents", received())
        span.end()
    assert len(tracing._last_span) == tracing.REMEMBERED_TRACES


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that keeps what it is sent."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_with_an_endpoint_the_spans_are_exported_over_otlp() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Collector.received = []
    try:
        provider = tracing.configure_tracing(
            service="test", otlp_endpoint=f"http://127.0.0.1:{server.server_port}/v1/traces"
        )
        assert provider is not None
        event = received()
        span, _headers = tracing.start_send("documents", event)
        span.end()
        assert provider.force_flush(timeout_millis=10_000)
    finally:
        tracing.configure_tracing(service="test", otlp_endpoint=None)
        server.shutdown()
        server.server_close()
    paths = [path for path, _ in _Collector.received]
    assert "/v1/traces" in paths
    # The protobuf body holds the trace id as its 16 raw bytes, and the service's name.
    body = b"".join(data for _, data in _Collector.received)
    assert bytes.fromhex(event.trace_id) in body
    assert b"triage-test" in body


async def test_a_dead_letter_is_in_the_trace_of_the_record_it_holds(
    spans: InMemorySpanExporter,
) -> None:
    """The classifier takes a document whose blob is gone: its dead letter is sent in the
    document's trace, the child of the span that took the record."""
    broker = in_memory_broker()
    taken: list[ConsumerRecord[bytes, bytes]] = []

    @broker.subscriber("documents")
    async def collect(message: KafkaMessage) -> None:
        taken.append(message.raw_message)

    document = received()
    letters = DeadLetters(
        broker,
        topic="deadletter",
        service="classifier",
        producer=Producer(service="classifier", version="t"),
    )
    async with TestKafkaBroker(broker):
        await publish_event(broker, "documents", document)
        (record,) = taken
        decode_record(record, type(document))
        error = UnprocessableError(ErrorClass.BLOB_MISSING, "gone", document.document_id)
        letter = await letters.send(record, error, consumed_topic="documents")
    assert letter.trace_id == document.trace_id
    finished = spans.get_finished_spans()
    taken_span = _span(finished, "process documents")
    sent = _span(finished, "send deadletter")
    assert taken_span.context is not None and sent.parent is not None
    assert sent.parent.span_id == taken_span.context.span_id


def test_a_dead_letter_of_a_record_without_a_trace_id_gets_its_own() -> None:
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic="documents",
        partition=0,
        offset=3,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=b"{not json",
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=9,
        headers=[("triage-trace-id", b"not-a-trace-id")],
    )
    letter = dead_letter_for(
        record,
        stage="classifier",
        producer=Producer(service="classifier", version="t"),
        error=UnprocessableError(ErrorClass.UNDECODABLE, "value is not valid JSON"),
    )
    assert letter.trace_id != "not-a-trace-id"
    assert letter.original_headers == {"triage-trace-id": "not-a-trace-id"}


def test_an_endpoint_without_the_exporter_stops_the_service_with_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from triage_ingest.settings import Settings as IngestSettings
    from triage_runtime import logs
    from triage_runtime.serve import STARTUP_FAILURE, serve

    # As if the otlp extra were not installed; the test's own log capture stays in place.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    monkeypatch.setattr(logs, "configure_logging", lambda **_: None)
    built: list[object] = []
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as stopped:
        serve(
            service="ingest",
            settings_class=lambda: IngestSettings(otlp_endpoint="http://127.0.0.1:1/v1/traces"),
            create_app=built.append,
            argv=[],
        )
    assert stopped.value.code == STARTUP_FAILURE
    assert built == []
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records] == [
        (
            "ERROR",
            "TRIAGE_OTLP_ENDPOINT is set but the OTLP exporter is not installed: "
            "install triage-runtime[otlp]",
            None,
        )
    ]


def test_an_upload_request_is_a_span_linked_to_each_documents_trace(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    """The request is a span in the caller's trace (its ``traceparent``); each document it
    carries is a trace of its own, whose first send links to the request and back."""
    from tests.unit.test_ingest_http import KEY_A, Ingest

    caller_trace, caller_span = "c0ffee" * 5 + "00", 0x1234
    ingest = Ingest(tmp_path)
    answer = ingest.upload(
        ("a.txt", b"first", "text/plain"),
        ("b.txt", b"second", "text/plain"),
        headers={**KEY_A, "traceparent": f"00-{caller_trace}-{caller_span:016x}-01"},
    )
    assert answer.status_code == 202
    documents = [event for _topic, event in ingest.broker.sent]
    assert len(documents) == 2

    finished = spans.get_finished_spans()
    request = _span(finished, "POST /v1/documents")
    assert request.kind is SpanKind.SERVER
    assert request.context is not None and request.parent is not None
    assert f"{request.context.trace_id:032x}" == caller_trace
    assert request.parent.span_id == caller_span
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 202
    assert request.attributes["http.route"] == "/v1/documents"

    sends = [s for s in finished if s.name == "send t.triage.documents.v1"]
    assert {f"{s.context.trace_id:032x}" for s in sends if s.context} == {
        d.trace_id for d in documents
    }
    for send in sends:
        assert send.parent is None  # each document's trace starts here
        assert [link.context.span_id for link in send.links] == [request.context.span_id]
    assert {link.context.span_id for link in request.links} == {
        s.context.span_id for s in sends if s.context
    }


def test_a_request_without_traceparent_is_a_trace_of_its_own(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    from tests.unit.test_ingest_http import Ingest

    ingest = Ingest(tmp_path)
    assert ingest.upload(("a.txt", b"a", "text/plain")).status_code == 401
    assert ingest.client.get("/no/such/page").status_code == 404
    finished = spans.get_finished_spans()
    assert [(s.name, s.parent) for s in finished] == [
        ("POST /v1/documents", None),
        ("GET unmatched", None),
    ]
    first, second = finished
    assert first.context is not None and second.context is not None
    assert first.context.trace_id != second.context.trace_id
    assert first.attributes is not None and first.attributes["http.response.status_code"] == 401


def test_a_cli_command_exports_its_span_when_the_endpoint_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from triage_cli.main import app

    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Collector.received = []
    monkeypatch.setenv("TRIAGE_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}/v1/traces")
    try:
        out = tmp_path / "asyncapi.json"
        result = CliRunner().invoke(app, ["contracts", "asyncapi", "--out", str(out)])
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    assert out.exists()
    assert tracing._state.provider is None  # off again after the command
    body = b"".join(data for path, data in _Collector.received if path == "/v1/traces")
    assert b"triage-cli" in body  # the service name
    assert b"triage contracts" in body  # the command's span


def test_a_cli_command_without_the_exporter_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from triage_cli.main import app

    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    monkeypatch.setenv("TRIAGE_OTLP_ENDPOINT", "http://127.0.0.1:1/v1/traces")
    result = CliRunner().invoke(app, ["contracts", "asyncapi", "--out", "/nonexistent/x.json"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: TRIAGE_OTLP_ENDPOINT is set but the OTLP exporter is not installed: "
        "install triage-runtime[otlp]"
    ]
