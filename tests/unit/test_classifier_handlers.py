"""The classifier's handlers without Kafka or PostgreSQL: MicroBatchScorer on records handed
to it and through its subscribers on FastStream's in-memory TestKafkaBroker, the drift
exporter, and POST /v1/classify."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field

import pytest
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI
from fastapi.testclient import TestClient
from faststream.kafka import KafkaBroker, TestKafkaBroker
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from tests.helpers import received, small_examples
from tests.unit.inmemory import MemoryBlobs, Topics, consumer_record, in_memory_broker
from triage_classifier import domain, routes
from triage_classifier.app import subscribe
from triage_classifier.batches import MicroBatchScorer
from triage_classifier.drift_export import DriftExporter, gauge_value
from triage_classifier.metrics import SERVICE
from triage_classifier.model_source import Serving
from triage_classifier.settings import Settings
from triage_contracts import (
    DeadLetterV1,
    DocumentClassifiedV1,
    DocumentReceivedV1,
    ErrorClass,
    ExtractionStatus,
    ModelRole,
    Producer,
    topics,
)
from triage_contracts import headers as header_names
from triage_ml import drift, scoring
from triage_ml import model as model_lib
from triage_ml.model_thread import ModelThread
from triage_ml.rules import load_rules
from triage_runtime.apikeys import KeyHolder
from triage_runtime.http import RequestMetrics
from triage_runtime.kafka import DeadLetters, encode_event
from triage_runtime.lag import Holdings
from triage_runtime.routing import RoutingPolicy
from triage_text.pool import ExtractionPool

PRODUCER = Producer(service=SERVICE, version="test")
TEXTS = {
    "billing": "dear team invoice payment refund amount due vat regards",
    "technical": "dear team error outage login api server crash regards",
    "legal": "dear team contract clause nda gdpr subpoena liability regards",
}
OUTPUTS = (
    topics.CLASSIFIED,
    topics.CLASSIFIED_SHADOW,
    topics.DOCUMENTS_RETRY,
    topics.DEADLETTER,
)


@dataclass
class FixedModels:
    """The models serving, set by the test (ModelSource follows the registry instead)."""

    serving: Serving | None
    canary: Serving | None = None
    shadow: Serving | None = None
    policy: RoutingPolicy = field(default_factory=RoutingPolicy)


@pytest.fixture(scope="module")
def trained() -> model_lib.LoadedModel:
    """A small TF-IDF model, trained with a drift baseline."""
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    return model_lib.LoadedModel(
        version=metadata["version"],
        labels=tuple(metadata["labels"]),
        thresholds=metadata["thresholds"],
        metadata=metadata,
        _pipeline=pipeline,
    )


@pytest.fixture(scope="module")
def rules() -> model_lib.LoadedModel:
    """The shipped rules model (no drift baseline)."""
    return model_lib.LoadedModel.from_rules(load_rules(None))


@pytest.fixture
def pool() -> Iterator[ExtractionPool]:
    """An extraction pool; short plain text never starts a worker process."""
    pool = ExtractionPool(workers=1)
    yield pool
    pool.close()


@pytest.fixture
def model_thread() -> Iterator[ModelThread]:
    """The scoring thread."""
    thread = ModelThread(name="test-scoring")
    yield thread
    thread.close()


@dataclass
class Rig:
    """A scorer wired to in-memory dependencies, and what it published."""

    scorer: MicroBatchScorer
    models: FixedModels
    blobs: MemoryBlobs
    out: Topics
    broker: KafkaBroker
    settings: Settings

    def document(self, label: str, *, number: int = 0) -> DocumentReceivedV1:
        """A stored text document about ``label``."""
        data = f"{TEXTS[label]} {number}".encode()
        return received(self.blobs.put(data))

    def record(
        self,
        event: DocumentReceivedV1,
        *,
        partition: int = 0,
        offset: int = 0,
        headers: Mapping[str, str] | None = None,
    ) -> ConsumerRecord[bytes, bytes]:
        """``event`` as read from the documents topic."""
        return consumer_record(
            self.settings.topic(topics.DOCUMENTS),
            encode_event(event),
            key=event.document_id.encode(),
            partition=partition,
            offset=offset,
            headers=headers,
        )


def _rig(
    trained: model_lib.LoadedModel,
    pool: ExtractionPool,
    model_thread: ModelThread,
    *,
    with_subscribers: bool = False,
    drift_monitor: drift.DriftMonitor | None = None,
    **settings: object,
) -> Rig:
    config = Settings.model_validate({"topic_prefix": "unit.", **settings})
    broker = in_memory_broker()
    models = FixedModels(Serving(trained, ModelRole.CHAMPION))
    blobs = MemoryBlobs()
    scorer = MicroBatchScorer(
        broker=broker,
        settings=config,
        models=models,
        reader=scoring.DocumentReader(blobs=blobs, pool=pool, max_bytes=1024 * 1024),
        dead_letters=DeadLetters(
            broker, topic=config.topic(topics.DEADLETTER), service=SERVICE, producer=PRODUCER
        ),
        model_thread=model_thread,
        producer=PRODUCER,
        drift_monitor=drift_monitor,
    )
    out = Topics(broker, [config.topic(name) for name in OUTPUTS])
    if with_subscribers:
        subscribe(broker, config, scorer, holdings=Holdings())
    return Rig(scorer, models, blobs, out, broker, config)


@pytest.fixture
async def rig(
    trained: model_lib.LoadedModel, pool: ExtractionPool, model_thread: ModelThread
) -> AsyncIterator[Rig]:
    """A scorer on an in-memory broker, without its subscribers (tests hand it records)."""
    rig = _rig(trained, pool, model_thread)
    async with TestKafkaBroker(rig.broker):
        yield rig


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_micro_batch_is_scored_and_published_in_the_order_read(rig: Rig) -> None:
    documents = [rig.document(label) for label in ("legal", "billing", "technical")]
    consumed = _value(
        "triage_events_consumed_total", service=SERVICE, topic=topics.DOCUMENTS, outcome="ok"
    )

    await rig.scorer.process([rig.record(d) for d in documents], topics.DOCUMENTS)

    published = rig.out.events(rig.settings.topic(topics.CLASSIFIED), DocumentClassifiedV1)
    assert [e.document_id for e in published] == [d.document_id for d in documents]
    assert [e.prediction.label for e in published if e.prediction] == [
        "legal",
        "billing",
        "technical",
    ]
    assert {e.model.role for e in published} == {ModelRole.CHAMPION}
    assert all(e.trace_id == d.trace_id for e, d in zip(published, documents, strict=True))
    keys = [r.key for r in rig.out.records[rig.settings.topic(topics.CLASSIFIED)]]
    assert keys == [d.document_id.encode() for d in documents]
    assert rig.out.records[rig.settings.topic(topics.CLASSIFIED_SHADOW)] == []
    assert (
        _value(
            "triage_events_consumed_total", service=SERVICE, topic=topics.DOCUMENTS, outcome="ok"
        )
        == consumed + 3
    )


async def test_unreadable_records_are_dead_letters_and_the_rest_goes_on(rig: Rig) -> None:
    good = rig.document("billing")
    missing = received("ee" * 32)  # no such blob
    undecodable = consumer_record(rig.settings.topic(topics.DOCUMENTS), b"{not json", offset=7)

    await rig.scorer.process(
        [undecodable, rig.record(missing, offset=8), rig.record(good, offset=9)],
        topics.DOCUMENTS,
    )

    letters = rig.out.events(rig.settings.topic(topics.DEADLETTER), DeadLetterV1)
    assert [(d.error_class, d.source_offset) for d in letters] == [
        (ErrorClass.UNDECODABLE, 7),
        (ErrorClass.BLOB_MISSING, 8),
    ]
    assert letters[1].document_id == missing.document_id
    assert {d.stage for d in letters} == {SERVICE}
    published = rig.out.events(rig.settings.topic(topics.CLASSIFIED), DocumentClassifiedV1)
    assert [e.document_id for e in published] == [good.document_id]


async def test_an_empty_document_is_published_without_a_prediction(rig: Rig) -> None:
    empty = received(rig.blobs.put(b"   \n  "))
    failures = _value("triage_classifier_extraction_failures_total", reason="empty")

    await rig.scorer.process([rig.record(empty)], topics.DOCUMENTS)

    [event] = rig.out.events(rig.settings.topic(topics.CLASSIFIED), DocumentClassifiedV1)
    assert event.prediction is None and event.extraction.status is ExtractionStatus.EMPTY
    assert _value("triage_classifier_extraction_failures_total", reason="empty") == failures + 1


async def test_a_transient_blob_failure_sets_the_document_aside_for_later(rig: Rig) -> None:
    document = rig.document("legal")
    rig.blobs.failing = True
    retries = _value("triage_classifier_retries_total", attempt="1")
    before = time.time()

    await rig.scorer.process([rig.record(document, partition=3)], topics.DOCUMENTS)

    retry_topic = rig.settings.topic(topics.DOCUMENTS_RETRY)
    [record] = rig.out.records[retry_topic]
    assert record.key == document.document_id.encode()
    assert record.value == encode_event(document)
    [headers] = rig.out.headers(retry_topic)
    assert headers[header_names.ATTEMPT] == "1"
    assert headers[header_names.SOURCE_PARTITION] == "3"
    due = int(headers[header_names.RETRY_AT]) / 1000
    assert before + 2.0 - 0.01 <= due <= time.time() + 2.0  # the first delay: 2 s
    assert _value("triage_classifier_retries_total", attempt="1") == retries + 1
    assert rig.out.records[rig.settings.topic(topics.CLASSIFIED)] == []
    assert rig.out.records[rig.settings.topic(topics.DEADLETTER)] == []


async def test_a_document_out_of_attempts_is_a_dead_letter(rig: Rig) -> None:
    document = rig.document("legal")
    rig.blobs.failing = True
    tried = {header_names.ATTEMPT: "5", header_names.SOURCE_PARTITION: "0"}

    await rig.scorer.process([rig.record(document, headers=tried)], topics.DOCUMENTS_RETRY)

    [letter] = rig.out.events(rig.settings.topic(topics.DEADLETTER), DeadLetterV1)
    assert letter.error_class is ErrorClass.STORAGE_ERROR
    assert letter.reason.startswith("gave up after 5 attempt(s): blob store failed")
    assert letter.source_topic == rig.settings.topic(topics.DOCUMENTS)
    assert rig.out.records[rig.settings.topic(topics.DOCUMENTS_RETRY)] == []


async def test_without_a_model_the_batch_is_left_for_redelivery(rig: Rig) -> None:
    rig.models.serving = None
    with pytest.raises(RuntimeError, match="no model in service yet"):
        await rig.scorer.process([rig.record(rig.document("billing"))], topics.DOCUMENTS)
    assert rig.blobs.reads == 0  # nothing was done that a redelivery would do again


async def test_the_canary_scores_its_partitions_and_the_shadow_its_sample(
    rig: Rig, rules: model_lib.LoadedModel
) -> None:
    rig.models.canary = Serving(rules, ModelRole.CANARY)
    rig.models.shadow = Serving(rules, ModelRole.SHADOW)
    rig.models.policy = RoutingPolicy(version=3, canary_partitions=frozenset({1}), shadow_sample=1)
    on_champion, on_canary = rig.document("billing"), rig.document("legal")
    empty = received(rig.blobs.put(b"  "))

    # Retried records: the documents-topic partition they were first read from decides.
    await rig.scorer.process(
        [
            rig.record(on_champion, partition=1, headers={header_names.SOURCE_PARTITION: "0"}),
            rig.record(on_canary, partition=0, headers={header_names.SOURCE_PARTITION: "1"}),
            rig.record(empty, headers={header_names.SOURCE_PARTITION: "2"}),
        ],
        topics.DOCUMENTS_RETRY,
    )

    published = rig.out.events(rig.settings.topic(topics.CLASSIFIED), DocumentClassifiedV1)
    assert [(e.document_id, e.model.role) for e in published] == [
        (on_champion.document_id, ModelRole.CHAMPION),
        (on_canary.document_id, ModelRole.CANARY),
        (empty.document_id, ModelRole.CHAMPION),
    ]
    assert {e.policy_version for e in published} == {3}
    shadowed = rig.out.events(rig.settings.topic(topics.CLASSIFIED_SHADOW), DocumentClassifiedV1)
    assert [(e.document_id, e.model.role) for e in shadowed] == [
        (on_champion.document_id, ModelRole.SHADOW),
        (on_canary.document_id, ModelRole.SHADOW),
    ]  # the empty document has no text to score


async def test_a_failing_shadow_never_holds_up_the_batch(rig: Rig) -> None:
    broken = model_lib.LoadedModel(
        version="broken", labels=("billing",), thresholds={}, metadata={}, _pipeline=None
    )
    rig.models.shadow = Serving(broken, ModelRole.SHADOW)
    rig.models.policy = RoutingPolicy(shadow_sample=1)
    failures = _value("triage_classifier_shadow_failures_total")

    await rig.scorer.process([rig.record(rig.document("billing"))], topics.DOCUMENTS)

    assert len(rig.out.records[rig.settings.topic(topics.CLASSIFIED)]) == 1
    assert rig.out.records[rig.settings.topic(topics.CLASSIFIED_SHADOW)] == []
    assert _value("triage_classifier_shadow_failures_total") == failures + 1


async def test_the_documents_subscriber_publishes_what_it_scores(
    trained: model_lib.LoadedModel, pool: ExtractionPool, model_thread: ModelThread
) -> None:
    rig = _rig(trained, pool, model_thread, with_subscribers=True)
    documents = [rig.document("technical", number=n) for n in range(3)]
    async with TestKafkaBroker(rig.broker) as broker:
        for document in documents:
            await broker.publish(
                encode_event(document),
                rig.settings.topic(topics.DOCUMENTS),
                key=document.document_id.encode(),
            )
    published = rig.out.events(rig.settings.topic(topics.CLASSIFIED), DocumentClassifiedV1)
    assert [e.document_id for e in published] == [d.document_id for d in documents]
    assert {e.prediction.label for e in published if e.prediction} == {"technical"}


async def test_the_retry_subscriber_tries_again_until_the_attempts_run_out(
    trained: model_lib.LoadedModel, pool: ExtractionPool, model_thread: ModelThread
) -> None:
    rig = _rig(
        trained,
        pool,
        model_thread,
        with_subscribers=True,
        retry_max_attempts=2,
        retry_backoff_seconds=0.01,
    )
    document = rig.document("billing")
    rig.blobs.failing = True
    async with TestKafkaBroker(rig.broker) as broker:
        # In memory, each set-aside record reaches the retry subscriber at once, which waits
        # until it is due, reads it again and sets it aside again, until it gives up.
        await broker.publish(
            encode_event(document),
            rig.settings.topic(topics.DOCUMENTS),
            key=document.document_id.encode(),
        )
    retry_topic = rig.settings.topic(topics.DOCUMENTS_RETRY)
    # The order of two subscribers of one topic is the in-memory broker's (a WeakSet's).
    assert sorted(h[header_names.ATTEMPT] for h in rig.out.headers(retry_topic)) == ["1", "2"]
    [letter] = rig.out.events(rig.settings.topic(topics.DEADLETTER), DeadLetterV1)
    assert letter.reason.startswith("gave up after 2 attempt(s)")
    assert letter.source_topic == retry_topic
    assert rig.blobs.reads == 3


def test_a_retry_batch_waits_for_its_last_document_but_never_too_long() -> None:
    now = 1_000.0
    assert domain.retry_wait([1_000_500, 1_002_000], now=now, longest_seconds=60) == 2.0
    assert domain.retry_wait([1_000_500, 1_200_000], now=now, longest_seconds=60) == 60
    assert domain.retry_wait([999_000], now=now, longest_seconds=60) <= 0
    assert domain.retry_wait([], now=now, longest_seconds=60) <= 0


async def test_drift_gauges_follow_the_serving_models(
    trained: model_lib.LoadedModel, pool: ExtractionPool, model_thread: ModelThread
) -> None:
    monitor = drift.DriftMonitor(
        max_documents=100, thresholds=drift.DriftThresholds(min_documents=2)
    )
    rig = _rig(trained, pool, model_thread, drift_monitor=monitor)
    exporter = DriftExporter(monitor=monitor, models=rig.models, interval_seconds=60)
    labels = {"model_version": trained.version, "model_role": "champion"}
    async with TestKafkaBroker(rig.broker):
        await rig.scorer.process(
            [rig.record(rig.document(label)) for label in TEXTS], topics.DOCUMENTS
        )
    exporter.start()
    exporter.export()
    assert _value("triage_drift_window_documents", **labels) == 3
    psi = REGISTRY.get_sample_value("triage_drift_psi", {**labels, "signal": "confidence"})
    assert psi is not None and not math.isnan(psi)

    rig.models.serving = None  # the model left service: its series go
    exporter.export()
    assert REGISTRY.get_sample_value("triage_drift_window_documents", labels) is None

    rig.models.serving = Serving(trained, ModelRole.CHAMPION)
    exporter.export()
    assert _value("triage_drift_window_documents", **labels) == 0
    await exporter.stop()  # stopping removes what it exported
    assert REGISTRY.get_sample_value("triage_drift_window_documents", labels) is None


def test_a_drift_signal_without_enough_documents_is_nan() -> None:
    judged = drift.Signal("confidence", 0.12, 0.2, 500, drift.Status.OK, "")
    too_few = drift.Signal("confidence", 0.5, 0.2, 5, drift.Status.INSUFFICIENT, "")
    assert gauge_value(judged) == 0.12
    assert math.isnan(gauge_value(too_few))


class Keys:
    """API keys in a dict."""

    def __init__(self, keys: dict[str, KeyHolder]) -> None:
        self._keys = keys

    async def holder(self, key: str) -> KeyHolder | None:
        """The holder of ``key``, if it is one of ours."""
        return self._keys.get(key)


def _classify_client(
    models: FixedModels, model_thread: ModelThread, **settings: object
) -> TestClient:
    app = FastAPI()
    app.add_middleware(RequestMetrics, service=SERVICE)
    routes.use(
        app,
        settings=Settings.model_validate(settings),
        api_keys=Keys({"k-1": KeyHolder(id=1, name="tests")}),
        models=models,
        model_thread=model_thread,
    )
    return TestClient(app)


def test_classify_answers_with_the_streaming_paths_prediction(
    trained: model_lib.LoadedModel, model_thread: ModelThread
) -> None:
    policy = RoutingPolicy(version=4, thresholds={trained.version: {"billing": 0.01}})
    models = FixedModels(Serving(trained, ModelRole.CHAMPION), policy=policy)
    client = _classify_client(models, model_thread)
    answer = client.post(
        "/v1/classify", json={"text": TEXTS["billing"]}, headers={"X-API-Key": "k-1"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    [expected] = trained.predict([TEXTS["billing"]])
    assert body["prediction"]["label"] == expected.label == "billing"
    assert body["prediction"]["threshold"] == 0.01  # the policy's, as on the Kafka path
    assert body["model"] == {"version": trained.version, "role": "champion"}


def test_classify_wants_a_live_key(
    trained: model_lib.LoadedModel, model_thread: ModelThread
) -> None:
    client = _classify_client(FixedModels(Serving(trained, ModelRole.CHAMPION)), model_thread)
    for headers in ({}, {"X-API-Key": "not-a-key"}):
        refused = client.post("/v1/classify", json={"text": "invoice"}, headers=headers)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "ApiKey"
    open_client = _classify_client(
        FixedModels(Serving(trained, ModelRole.CHAMPION)), model_thread, require_api_key=False
    )
    assert open_client.post("/v1/classify", json={"text": "invoice"}).status_code == 200


def test_classify_refuses_without_a_trained_model_and_without_text(
    trained: model_lib.LoadedModel, rules: model_lib.LoadedModel, model_thread: ModelThread
) -> None:
    degraded = _classify_client(
        FixedModels(Serving(rules, ModelRole.RULES)),
        model_thread,
        require_api_key=False,
        model_refresh_seconds=7,
    )
    unavailable = degraded.post("/v1/classify", json={"text": "invoice"})
    assert unavailable.status_code == 503
    assert unavailable.headers["Retry-After"] == "7"
    client = _classify_client(
        FixedModels(Serving(trained, ModelRole.CHAMPION)), model_thread, require_api_key=False
    )
    empty = client.post("/v1/classify", json={"text": "   "})
    assert empty.status_code == 422
    assert empty.json()["detail"][0]["type"] == "value_error.empty_text"


async def test_a_micro_batch_is_one_span_with_its_steps_linked_to_each_documents_trace(
    rig: Rig, spans: InMemorySpanExporter
) -> None:
    """Where the batch's time went (reading, the model's steps, publishing) is one trace;
    each document's own trace links to it, and it back to each record's process span."""
    documents = [rig.document(label) for label in ("legal", "billing")]
    await rig.scorer.process(
        [rig.record(d, offset=n) for n, d in enumerate(documents)], topics.DOCUMENTS
    )

    finished = spans.get_finished_spans()
    by_name = {s.name: s for s in finished}
    batch = by_name[f"classify {topics.DOCUMENTS}"]
    assert batch.context is not None and batch.parent is None
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 2

    def parent_of(name: str) -> int | None:
        span = by_name[name]
        assert span.context is not None and span.context.trace_id == batch.context.trace_id
        return span.parent.span_id if span.parent else None

    steps = {name: by_name[name] for name in ("read", "score champion", "publish")}
    for step in steps.values():
        assert step.parent is not None and step.parent.span_id == batch.context.span_id
    score = steps["score champion"].context
    assert score is not None
    # The model's steps run on the model thread, still children of the scoring span.
    for step_name in ("model features", "model probabilities", "model explanations"):
        assert parent_of(step_name) == score.span_id

    taken = [s for s in finished if s.name == f"process {rig.settings.topic(topics.DOCUMENTS)}"]
    sent = [s for s in finished if s.name == f"send {rig.settings.topic(topics.CLASSIFIED)}"]
    assert {f"{s.context.trace_id:032x}" for s in taken + sent if s.context} == {
        d.trace_id for d in documents
    }
    for span in taken + sent:
        assert [link.context.span_id for link in span.links] == [batch.context.span_id]
    assert {link.context.span_id for link in batch.links} == {
        s.context.span_id for s in taken if s.context
    }


def test_a_classify_call_is_one_trace_from_request_to_model(
    trained: model_lib.LoadedModel, model_thread: ModelThread, spans: InMemorySpanExporter
) -> None:
    models = FixedModels(Serving(trained, ModelRole.CHAMPION))
    client = _classify_client(models, model_thread)
    caller_trace = "ab" * 16
    answer = client.post(
        "/v1/classify",
        json={"text": TEXTS["billing"]},
        headers={"X-API-Key": "k-1", "traceparent": f"00-{caller_trace}-{7:016x}-01"},
    )
    assert answer.status_code == 200, answer.text
    finished = spans.get_finished_spans()
    assert {f"{s.context.trace_id:032x}" for s in finished if s.context} == {caller_trace}
    request = next(s for s in finished if s.name == "POST /v1/classify")
    assert request.parent is not None and request.parent.span_id == 7
    assert request.context is not None
    features = next(s for s in finished if s.name == "model features")
    assert features.parent is not None and features.parent.span_id == request.context.span_id
