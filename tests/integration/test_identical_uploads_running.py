"""Identical bytes uploaded by many clients at once, against the running pipeline.

Ingest, the classifier and the router run as ``triage-<service>`` processes (uvicorn, their
real entry points, as the fault tests start them) on the real Kafka broker and PostgreSQL,
with topics and a database of this test's own. Rounds of concurrent clients, each on its
own connection, post the same bytes at the same moment, half the rounds under one
Idempotency-Key. Judged against what the clients were told and what the topics hold, read
to their end: every client of a round gets the same document id; each document is published
once (one DocumentReceived record), scored once (one DocumentClassified record) and reaches
one outcome; ingest's ``triage_ingest_documents_total`` counts each document once, and
``triage_ingest_uploads_total{outcome="accepted"}`` counts the uploads it accepted (replays
are ``replayed``), which is more than the documents by design.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.faults.harness import Services, group_lag
from tests.helpers import new_api_key
from tests.kafkatools import produce
from tests.outcomes import Judgement, judge, wait_for_outcomes
from tests.stack import Stack
from triage_contracts import DocumentReceivedV1, topics
from triage_contracts.headers import headers_for
from triage_runtime.kafka import encode_event

ROUNDS = 12
CLIENTS = 8
SETTLE_SECONDS = 180  # how long the test may wait for outcomes, not a claim


@pytest.fixture
def running(
    isolated: Stack, clean_db: str, small_model: Path, triage_bin: str, tmp_path: Path
) -> Iterator[Services]:
    """Ingest, classifier and router processes on this test's topics and database."""
    env = {
        **os.environ,
        "TRIAGE_KAFKA_BOOTSTRAP": isolated.kafka_bootstrap,
        "TRIAGE_DATABASE_URL": clean_db,
        "TRIAGE_TOPIC_PREFIX": isolated.topic_prefix,
        "TRIAGE_BLOB_DIR": str(tmp_path / "blobs"),
        "TRIAGE_CLASSIFIER_MODEL_PATH": str(small_model),
        "TRIAGE_CLASSIFIER_GROUP_ID": "identical-classifier",
        "TRIAGE_ROUTER_GROUP_ID": "identical-router",
        "TRIAGE_INGEST_UPLOADS_PER_MINUTE_PER_KEY": "0",
        "TRIAGE_INGEST_MAX_CONCURRENT_UPLOADS": str(4 * CLIENTS),
        "TRIAGE_INGEST_MAX_CONCURRENT_UPLOADS_PER_KEY": str(4 * CLIENTS),
        "TRIAGE_LOG_LEVEL": "INFO",
    }
    for unset in ("TRIAGE_BLOB_URL", "TRIAGE_CLASSIFIER_MODEL_ALIAS", "TRIAGE_METRICS_TOKEN"):
        env.pop(unset, None)
    services = Services(triage=triage_bin, env=env, work=tmp_path)
    try:
        for kind in ("ingest", "classifier", "router"):
            services.start(kind)
        for kind in ("ingest", "classifier", "router"):
            asyncio.run(services.wait_ready(kind))
        yield services
    finally:
        services.stop_all()


async def _round(url: str, api_key: str, data: bytes, idempotency_key: str | None) -> list[str]:
    """``CLIENTS`` clients, each on a connection of its own, post ``data`` at one moment; the
    document ids they were answered with."""
    go = asyncio.Event()
    headers = {"X-API-Key": api_key}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key

    async def one() -> str:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            await client.get("/healthz")  # connected before the starting shot
            await go.wait()
            response = await client.post(
                "/v1/documents",
                files={"files": ("invoice.txt", data, "text/plain")},
                headers=headers,
            )
        assert response.status_code == 202, response.text
        [document] = response.json()["documents"]
        return str(document["document_id"])

    clients = [asyncio.create_task(one()) for _ in range(CLIENTS)]
    await asyncio.sleep(0.3)
    go.set()
    return list(await asyncio.gather(*clients))


def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Ingest's Prometheus samples: (name, labels) → value."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.timeout(600)
def test_identical_bytes_at_once_are_one_document_scored_once(
    running: Services, isolated: Stack, clean_db: str
) -> None:
    ingest = running.running["ingest"].url
    api_key = new_api_key(clean_db, "racers")
    tag = secrets.token_hex(4)
    answers: list[list[str]] = []
    for index in range(ROUNDS):
        data = f"Invoice {tag}-{index} is overdue; please pay the amount due.\n".encode()
        key = f"race-{tag}-{index}" if index % 2 else None
        answers.append(asyncio.run(_round(ingest, api_key, data, key)))

    assert all(len(set(ids)) == 1 for ids in answers), "one document per round's bytes"
    ids = {ids[0] for ids in answers}
    assert len(ids) == ROUNDS
    reached = wait_for_outcomes(
        clean_db,
        ids,
        bootstrap=isolated.kafka_bootstrap,
        groups=[
            ("identical-classifier", isolated.topic(topics.DOCUMENTS)),
            ("identical-router", isolated.topic(topics.CLASSIFIED)),
        ],
        timeout=SETTLE_SECONDS,
    )
    assert reached == ids, "every document reaches an outcome"

    judgement = judge(
        clean_db,
        ids,
        bootstrap=isolated.kafka_bootstrap,
        documents_topic=isolated.topic(topics.DOCUMENTS),
        classified_topic=isolated.topic(topics.CLASSIFIED),
    )
    published = Counter({d: f.received_records for d, f in judgement.fates.items()})
    scored = Counter({d: f.classified_events for d, f in judgement.fates.items()})
    metrics = _metrics(ingest)
    documents = metrics[("triage_ingest_documents_total", (("source_kind", "upload"),))]
    accepted = metrics[("triage_ingest_uploads_total", (("outcome", "accepted"),))]
    replayed = metrics.get(("triage_ingest_uploads_total", (("outcome", "replayed"),)), 0.0)
    seen = {
        "DocumentReceived records": sum(published.values()),
        "most for one document": max(published.values()),
        "DocumentClassified records": sum(scored.values()),
        "most scorings of one document": max(scored.values()),
        "triage_ingest_documents_total": documents,
    }
    print(f"\n{ROUNDS} rounds of {CLIENTS} clients: {seen}, uploads accepted {accepted:g}")
    assert seen == {
        "DocumentReceived records": ROUNDS,
        "most for one document": 1,
        "DocumentClassified records": ROUNDS,
        "most scorings of one document": 1,
        "triage_ingest_documents_total": ROUNDS,
    }, "each document published once, scored once and counted once"
    assert not judgement.lost and not judgement.duplicated
    # Every 202 is an accepted upload or a replay of one: the uploads counter counts each
    # upload (the same bytes accepted again included), the documents counter each document.
    assert accepted + replayed == ROUNDS * CLIENTS
    assert accepted >= ROUNDS

    # At least once, by design: the same DocumentReceived delivered again (as after a crash
    # between the broker's acknowledgement and the outbox's commit) is scored again, and the
    # document keeps its one outcome; ingest counts no new document.
    again = next(
        DocumentReceivedV1.model_validate(record["value"])
        for record in judgement.received
        if record["key"] == min(ids)
    )
    asyncio.run(
        produce(
            isolated.kafka_bootstrap,
            isolated.topic(topics.DOCUMENTS),
            encode_event(again),
            key=again.document_id.encode(),
            headers=headers_for(again),
        )
    )
    rescored = _until_scored_twice(clean_db, ids, isolated, again.document_id)
    assert rescored.fates[again.document_id].classified_events == 2
    assert rescored.fates[again.document_id].received_events == 1  # the same event id
    assert not rescored.lost and not rescored.duplicated
    assert {d: f.outcome for d, f in rescored.fates.items()} == {
        d: f.outcome for d, f in judgement.fates.items()
    }, "a document scored again keeps its outcome"
    after = _metrics(ingest)[("triage_ingest_documents_total", (("source_kind", "upload"),))]
    assert after == len(ids)


def _until_scored_twice(
    database_url: str, ids: set[str], stack: Stack, document_id: str
) -> Judgement:
    """Judge again once ``document_id`` has its second DocumentClassified and, after that,
    the router has read everything on the classified topic (60 s at most)."""
    classified = stack.topic(topics.CLASSIFIED)

    def now() -> Judgement:
        return judge(
            database_url,
            ids,
            bootstrap=stack.kafka_bootstrap,
            documents_topic=stack.topic(topics.DOCUMENTS),
            classified_topic=classified,
        )

    deadline = time.monotonic() + 60
    while now().fates[document_id].classified_events < 2:
        assert time.monotonic() < deadline, f"{document_id} was not scored again in 60 s"
        time.sleep(1)
    while asyncio.run(group_lag(stack.kafka_bootstrap, "identical-router", classified)):
        assert time.monotonic() < deadline, "the router did not read the classified topic"
        time.sleep(1)
    return now()
