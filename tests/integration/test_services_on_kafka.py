"""Each service against the real broker (and database): what it consumes, emits and refuses."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from tests.helpers import classified, received
from tests.kafkatools import collect, produce, produce_on_one_partition
from tests.stack import Stack
from triage_classifier.app import create_app as classifier_app
from triage_classifier.settings import Settings as ClassifierSettings
from triage_contracts import ExtractionStatus, topics
from triage_router.app import create_app as router_app
from triage_router.settings import Settings as RouterSettings
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.kafka import encode_event


def _of_document(document_id: str):  # type: ignore[no-untyped-def]
    return lambda m: m["key"] == document_id


def test_classifier_scores_documents_and_dead_letters_poison(
    isolated: Stack, tmp_path: Path, small_model: Path
) -> None:
    stack = isolated
    blobs = LocalBlobStore(tmp_path)
    readable = received(blobs.put(b"invoice payment overdue, please refund the charge"))
    encrypted_pdf = received(blobs.put(b"%PDF-1.4 broken"), media_type="application/pdf")
    missing = received("ee" * 32)
    settings = ClassifierSettings(
        kafka_bootstrap=stack.kafka_bootstrap,
        blob_dir=tmp_path,
        topic_prefix=stack.topic_prefix,
        model_path=small_model,
        group_id="it-classifier",
    )
    documents = stack.topic(topics.DOCUMENTS)

    async def send_all() -> None:
        for event in (readable, encrypted_pdf, missing):
            await produce(
                stack.kafka_bootstrap,
                documents,
                encode_event(event),
                key=event.document_id.encode(),
            )
        await produce(stack.kafka_bootstrap, documents, b"{not json", key=b"poison")

    with TestClient(classifier_app(settings)) as client:
        ready = client.get("/readyz").json()
        assert ready["checks"] == {"kafka": "ok", "model": "ok"}
        asyncio.run(send_all())
        wanted = {readable.document_id, encrypted_pdf.document_id}
        out = asyncio.run(
            collect(
                stack.kafka_bootstrap,
                [stack.topic(topics.CLASSIFIED), stack.topic(topics.DEADLETTER)],
                until=lambda ms: (
                    wanted <= {m["key"] for m in ms}
                    and sum(m["topic"].endswith("deadletter.v1") for m in ms) >= 2
                ),
            )
        )
        metrics = client.get("/metrics").text

    by_key = {m["key"]: m for m in out if m["topic"].endswith("classified.v1")}
    scored = by_key[readable.document_id]["value"]
    assert scored["prediction"]["label"] == "billing"
    assert scored["model"]["version"] == small_model.name
    assert by_key[readable.document_id]["headers"]["triage-model-version"] == small_model.name
    assert scored["trace_id"] == readable.trace_id
    assert by_key[encrypted_pdf.document_id]["value"]["extraction"]["status"] == "corrupt"
    assert by_key[encrypted_pdf.document_id]["value"]["prediction"] is None

    letters = {
        m["value"]["error_class"]: m["value"] for m in out if m["topic"].endswith("deadletter.v1")
    }
    assert letters["blob_missing"]["document_id"] == missing.document_id
    assert base64.b64decode(letters["undecodable"]["original_value_b64"]) == b"{not json"
    assert letters["undecodable"]["source_topic"] == documents
    counted = re.search(
        r'triage_dead_letters_total\{error_class="blob_missing",service="classifier"\} (\S+)',
        metrics,
    )
    assert counted is not None, metrics
    assert float(counted.group(1)) >= 1


def _router_consumed(metrics: str) -> float:
    """Messages the router finished with (ok or dead-lettered), from its /metrics text."""
    return sum(
        float(value)
        for value in re.findall(
            r'triage_events_consumed_total\{outcome="(?:ok|deadlettered)",service="router",'
            r'topic="triage.classified.v1"\} (\S+)',
            metrics,
        )
    )


def test_router_routes_reviews_and_ignores_redelivery(isolated: Stack, clean_db: str) -> None:
    stack = isolated
    confident = classified(sha256="a1" * 32, confidence=0.97, threshold=0.9)
    unsure = classified(sha256="a2" * 32, confidence=0.55, threshold=0.9)
    unreadable = classified(sha256="a3" * 32, status=ExtractionStatus.ENCRYPTED)
    settings = RouterSettings(
        kafka_bootstrap=stack.kafka_bootstrap,
        database_url=clean_db,
        topic_prefix=stack.topic_prefix,
        group_id="it-router",
    )
    classified_topic = stack.topic(topics.CLASSIFIED)

    async def send_all() -> None:
        # The confident event twice: a redelivery must not route it twice.
        for event in (confident, confident, unsure, unreadable):
            await produce(
                stack.kafka_bootstrap,
                classified_topic,
                encode_event(event),
                key=event.document_id.encode(),
            )
        await produce(stack.kafka_bootstrap, classified_topic, b'{"schema_name": 1}')

    def review_rows() -> dict[str, str]:
        engine = create_engine(clean_db)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT document_id, reason FROM review_item")).all()
        engine.dispose()
        return {r[0]: r[1] for r in rows}

    with TestClient(router_app(settings)) as client:
        assert client.get("/readyz").json()["checks"] == {"kafka": "ok", "database": "ok"}
        before = _router_consumed(client.get("/metrics").text)
        asyncio.run(send_all())
        # Wait until the router has handled all five messages (partitions run in any order).
        for _ in range(240):
            if _router_consumed(client.get("/metrics").text) - before >= 5:
                break
            time.sleep(0.25)
        out = asyncio.run(
            collect(
                stack.kafka_bootstrap,
                pattern=re.escape(stack.topic_prefix) + r"triage\.(routed\..*|deadletter\.v1)",
                until=lambda ms: (
                    any(m["topic"].endswith("deadletter.v1") for m in ms)
                    and any(".routed." in m["topic"] for m in ms)
                ),
            )
        )

    routed = [m for m in out if ".routed." in m["topic"]]
    assert [m["key"] for m in routed] == [confident.document_id]
    assert routed[0]["topic"] == stack.topic("triage.routed.billing.v1")
    assert routed[0]["value"]["model"]["version"] == "tfidf-lr-test"
    assert routed[0]["headers"]["triage-model-version"] == "tfidf-lr-test"
    assert review_rows() == {
        unsure.document_id: "low_confidence",
        unreadable.document_id: "encrypted",
    }
    [letter] = [m["value"] for m in out if m["topic"].endswith("deadletter.v1")]
    assert letter["stage"] == "router" and letter["error_class"] == "schema_invalid"


def test_a_message_the_database_refuses_is_dead_lettered_and_the_partition_goes_on(
    isolated: Stack, clean_db: str
) -> None:
    stack = isolated
    refused = classified(sha256="b1" * 32, confidence=0.97, threshold=0.9)
    after = classified(sha256="b2" * 32, confidence=0.97, threshold=0.9)
    engine = create_engine(clean_db)
    with engine.begin() as conn:  # the database will refuse exactly one document's routing
        conn.execute(
            text(
                "CREATE FUNCTION refuse_one() RETURNS trigger AS $$ BEGIN"
                f" IF NEW.document_id = '{refused.document_id}' THEN"
                " RAISE EXCEPTION 'refused by test' USING ERRCODE = '22023'; END IF;"
                " RETURN NEW; END $$ LANGUAGE plpgsql;"
                " CREATE TRIGGER refuse_one BEFORE INSERT ON routing_decision"
                " FOR EACH ROW EXECUTE FUNCTION refuse_one();"
            )
        )
    settings = RouterSettings(
        kafka_bootstrap=stack.kafka_bootstrap,
        database_url=clean_db,
        topic_prefix=stack.topic_prefix,
        group_id="it-router-refused",
    )

    try:
        # Both are on the topic before the router starts, so they arrive in one batch: the
        # batch's transaction fails, and the router applies its documents one at a time.
        asyncio.run(
            produce_on_one_partition(
                stack.kafka_bootstrap, stack.topic(topics.CLASSIFIED), (refused, after)
            )
        )
        with TestClient(router_app(settings)):
            out = asyncio.run(
                collect(
                    stack.kafka_bootstrap,
                    pattern=re.escape(stack.topic_prefix) + r"triage\.(routed\..*|deadletter\.v1)",
                    until=lambda ms: (
                        {m["key"] for m in ms} >= {refused.document_id, after.document_id}
                    ),
                )
            )
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_one ON routing_decision"))
            conn.execute(text("DROP FUNCTION refuse_one()"))
        engine.dispose()
    [letter] = [m["value"] for m in out if m["topic"].endswith("deadletter.v1")]
    assert letter["document_id"] == refused.document_id
    assert letter["error_class"] == "storage_error"
    assert "refused the effect" in letter["reason"]
    routed = {m["key"] for m in out if ".routed." in m["topic"]}
    assert routed == {after.document_id}
