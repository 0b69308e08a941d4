"""A bad model as canary: detected, rolled back, and what it touched re-scored by replay.

Everything runs on the real broker and database: the classifier (champion + canary by
partition) and the router as in-process apps, then `triage canary report --apply` and
`triage replay` as the CLI a person would type.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.helpers import PRODUCER, TOPIC_WORDS, received, small_examples, sql_rows
from tests.kafkatools import collect, produce_many
from tests.stack import Stack, review_workflow
from triage_classifier.app import create_app as classifier_app
from triage_classifier.settings import Settings as ClassifierSettings
from triage_cli.exit_codes import ROLLBACK
from triage_cli.main import app as cli
from triage_contracts import DocumentReceivedV1, ModelRef, ModelRole, topics, utcnow
from triage_ml import model as model_lib
from triage_ml import scoring
from triage_ml.model import Example
from triage_router.app import create_app as router_app
from triage_router.settings import Settings as RouterSettings
from triage_runtime import routing as router_domain
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.kafka import encode_event, make_broker
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.outbox import Outbox
from triage_runtime.registry import LocalArtifactStore, ModelRegistry
from triage_runtime.routing import RoutingPolicy
from triage_text.extract import extract_text

PER_LABEL = 30
VAGUE = 12
# The toy models are too small for their own thresholds to route anything (they stay at 1.0):
# the routing policy's thresholds decide, in the classifier, the router, the canary report and
# the replay alike.
THRESHOLDS = {"billing": 0.8, "legal": 0.8, "technical": 0.8}


@pytest.fixture(scope="module")
def bad_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on corrupted labels: every legal example was labelled billing."""
    examples = [
        Example(text=e.text, label="billing" if e.label == "legal" else e.label)
        for e in small_examples()
    ]
    # A few "legal" examples in words no real document uses keep the label set the same.
    examples += [Example(text=f"notary seal stamp {i}", label="legal") for i in range(10)]
    pipeline, metadata, *_ = model_lib.train(examples, seed=1)
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("bad"))


def _texts() -> list[tuple[str, str | None]]:
    """(text, true label) documents: clear ones of each label, and vague ones."""
    docs: list[tuple[str, str | None]] = []
    for label, words in TOPIC_WORDS.items():
        vocab = words.split()
        for i in range(PER_LABEL):
            picked = " ".join(vocab[(i + k) % len(vocab)] for k in range(6))
            docs.append((f"dear team {picked} regards, ticket {1000 + i}", label))
    docs += [(f"hello, any news about my message number {i}?", None) for i in range(VAGUE)]
    return docs


def _now(event: DocumentReceivedV1) -> DocumentReceivedV1:
    """The event as if it had just been received (latency in the report is then real)."""
    document = event.document.model_copy(update={"received_at": utcnow()})
    return event.model_copy(update={"document": document})


def _cli(env: dict[str, str], *args: str, exit_code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == exit_code, result.output
    return result.output


def test_bad_canary_is_detected_rolled_back_and_replay_restores_champion_routing(
    isolated: Stack, clean_db: str, tmp_path: Path, small_model: Path, bad_model: Path
) -> None:
    store = tmp_path / "store"

    async def registry_setup() -> None:
        engine = make_async_engine(clean_db)
        registry = ModelRegistry(engine, LocalArtifactStore(store))
        try:
            for artifact in (small_model, bad_model):
                await registry.register(artifact, actor="test")
            await registry.move_alias("champion", small_model.name, actor="t", action="promote")
            await registry.move_alias(
                "canary", bad_model.name, actor="t", action="promote", forced=True, reason="test"
            )
        finally:
            await engine.dispose()

    asyncio.run(registry_setup())
    blob_dir = tmp_path / "blobs"
    env = {
        "TRIAGE_KAFKA_BOOTSTRAP": isolated.kafka_bootstrap,
        "TRIAGE_DATABASE_URL": clean_db,
        "TRIAGE_TOPIC_PREFIX": isolated.topic_prefix,
        "TRIAGE_BLOB_DIR": str(blob_dir),
        "TRIAGE_MODEL_STORE_URL": str(store),
        "TRIAGE_MODEL_CACHE_DIR": str(tmp_path / "cli-cache"),
    }
    thresholds = [
        f"{model.name}:{label}={value}"
        for model in (small_model, bad_model)
        for label, value in THRESHOLDS.items()
    ]
    _cli(
        env,
        *("policy", "set", "--canary-partitions", "0", "--reason", "toy models, canary on 0"),
        *(arg for threshold in thresholds for arg in ("--threshold", threshold)),
    )
    [(policy_version, audited)] = sql_rows(
        clean_db,
        "SELECT max(version), (SELECT count(*) FROM audit_log WHERE action = 'routing_policy')"
        " FROM routing_policy",
    )
    assert (policy_version, audited) == (1, 1)
    common: dict[str, Any] = {
        "kafka_bootstrap": isolated.kafka_bootstrap,
        "database_url": clean_db,
        "topic_prefix": isolated.topic_prefix,
        "blob_dir": blob_dir,
    }
    classifier = ClassifierSettings.model_validate(
        common
        | {
            "model_alias": "champion",
            "model_store_url": str(store),
            "model_cache_dir": tmp_path / "cache",
            "model_refresh_seconds": 0.5,
            "group_id": "it-canary-classifier",
            "extraction_workers": 1,
        }
    )
    router = RouterSettings.model_validate(common | {"group_id": "it-canary-router"})
    blobs = LocalBlobStore(blob_dir)
    docs = _texts()
    events = [_now(received(blobs.put(body.encode()))) for body, _ in docs]
    truth = {e.document_id: label for e, (_, label) in zip(events, docs, strict=True)}
    started = datetime.now(UTC) - timedelta(seconds=1)

    with TestClient(classifier_app(classifier)) as cls_client, TestClient(router_app(router)):
        deadline = time.monotonic() + 20
        want = f'model_role="canary",model_version="{bad_model.name}"}} 1.0'
        while want not in cls_client.get("/metrics").text:
            assert time.monotonic() < deadline, "the canary never loaded"
            time.sleep(0.1)
        partitions = asyncio.run(
            produce_many(
                isolated.kafka_bootstrap,
                isolated.topic(topics.DOCUMENTS),
                [(e.document_id.encode(), encode_event(e)) for e in events],
            )
        )
        deadline = time.monotonic() + 60
        handled = (
            "SELECT (SELECT count(*) FROM routing_decision) + (SELECT count(*) FROM review_item)"
        )
        while sql_rows(clean_db, handled)[0][0] < len(events):
            assert time.monotonic() < deadline, "the router did not handle every document"
            time.sleep(0.2)

    canary_docs = {e.document_id for e, p in zip(events, partitions, strict=True) if p == 0}
    assert 0 < len(canary_docs) < len(events)
    by_bad = sql_rows(clean_db, "SELECT document_id, queue FROM routing_decision")
    misrouted = {d for d, q in by_bad if d in canary_docs and truth[d] == "legal" and q != "legal"}
    assert misrouted, "the bad canary should have sent legal documents elsewhere"

    # Reviewers decide two documents the canary sent to review; replay must keep them.
    pending = sql_rows(
        clean_db,
        "SELECT id, document_id FROM review_item WHERE model_role = 'canary' ORDER BY id LIMIT 2",
    )
    assert pending, "the canary should have sent vague documents to review"

    async def decide() -> None:
        engine = make_async_engine(clean_db)
        # As the review UI does: the decisions' events go out (the outbox relay would also).
        broker = make_broker(
            KafkaConnection(kafka_bootstrap=isolated.kafka_bootstrap), client_id="test-review"
        )
        await broker.start()
        outbox = Outbox(engine, broker, service="review-ui", topic_prefix=isolated.topic_prefix)
        flow = review_workflow(engine, isolated, sorted(TOPIC_WORDS), outbox)
        for item_id, _ in pending:
            await flow.claim(item_id, reviewer="alice")
            await flow.decide(item_id, reviewer="alice", label="technical")
        await broker.stop()
        await engine.dispose()

    asyncio.run(decide())
    human = {doc_id for _, doc_id in pending}

    since = started.isoformat()
    report = _cli(
        env,
        "canary",
        "report",
        "--since",
        since,
        "--min-documents",
        "15",
        "--apply",
        "--actor",
        "canary-bot",
        "--plot",
        str(tmp_path / "canary.png"),
        exit_code=ROLLBACK,  # a rollback verdict exits non-zero, applied or not
    )
    assert "verdict: rollback" in report
    assert f"canary: {bad_model.name} → (none)" in report
    assert (tmp_path / "canary.png").stat().st_size > 1000
    [(alias_version,)] = sql_rows(clean_db, "SELECT version FROM model_alias WHERE alias='canary'")
    assert alias_version is None
    [(actor, verdict)] = sql_rows(
        clean_db,
        "SELECT actor, detail->'report'->>'verdict' FROM audit_log WHERE action = 'canary_verdict'",
    )
    assert (actor, verdict) == ("canary-bot", "rollback")
    history = sql_rows(
        clean_db, "SELECT action, reason FROM model_alias_history WHERE alias='canary'"
    )
    assert history[-1][0] == "clear" and "canary report" in history[-1][1]

    # What the champion decides for each document, computed here from the artifact.
    champion = model_lib.load(small_model)
    ref = ModelRef(version=champion.version, role=ModelRole.CHAMPION)
    policy = RoutingPolicy(version=1, thresholds={champion.version: THRESHOLDS})
    scored = scoring.classify(
        [
            scoring.Extracted(e, extract_text(body.encode(), "text/plain"))
            for e, (body, _) in zip(events, docs, strict=True)
        ],
        model=champion,
        model_ref=ref,
        producer=PRODUCER,
        policy=policy,
    )
    expected: dict[str, str] = {}
    for event in scored:
        decision = router_domain.decide(event, policy)
        expected[event.document_id] = (
            decision.queue if isinstance(decision, router_domain.RouteTo) else "review"
        )

    first = tmp_path / "replay1.csv"
    out = _cli(
        *(env, "replay", "--since", since, "--model", "champion", "--report", str(first)),
        *("--processes", "2"),  # scored in two processes; the same replay again in this one
    )
    assert f"{len(events)} documents in" in out
    changed = list(csv.DictReader(first.open()))
    assert {row["document_id"] for row in changed if row["outcome"] == "changed"} >= misrouted
    by_id = {e.document_id: e.document for e in events}
    for row in changed:  # the report says where each document came from, and when
        document = by_id[row["document_id"]]
        assert row["path"] == (document.filename or "")
        assert row["source"] == f"{document.source.kind}:{document.source.name}"
        assert datetime.fromisoformat(row["time"]) == document.received_at
    assert not {row["document_id"] for row in changed} & human

    # Every document now ends where the champion sends it; human decisions stand.
    routing = {
        d: (q, w, by)
        for d, q, w, by in sql_rows(
            clean_db, "SELECT document_id, queue, withdrawn_at, decided_by FROM routing_decision"
        )
    }
    review = dict(sql_rows(clean_db, "SELECT document_id, status FROM review_item"))
    for doc_id, want_outcome in expected.items():
        if doc_id in human:
            assert review[doc_id] == "decided"
            assert routing[doc_id][0] == "technical" and routing[doc_id][2] == "human"
            continue
        if want_outcome == "review":
            assert review.get(doc_id) == "pending", doc_id
            assert doc_id not in routing or routing[doc_id][1] is not None
        else:
            assert routing[doc_id][0] == want_outcome and routing[doc_id][1] is None, doc_id
            assert review.get(doc_id) in (None, "closed"), doc_id

    # The corrections went out: withdrawn from the wrong queue, routed to the right one.
    corrections = sql_rows(
        clean_db,
        "SELECT document_id, from_queue, to_queue, withdrawn_event_id::text,"
        " routed_event_id::text FROM routing_correction",
    )
    pending = sql_rows(clean_db, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
    assert corrections and pending == [(0,)]
    withdrawals = [row for row in corrections if row[1]]
    assert {row[0] for row in withdrawals} >= misrouted
    assert any(row[2] for row in withdrawals), "some document should move queue to queue"
    messages = asyncio.run(
        collect(
            isolated.kafka_bootstrap,
            pattern=f"{isolated.topic_prefix.replace('.', '[.]')}triage[.]routed[.].*",
            until=lambda ms: (
                sum(m["value"]["schema_name"] == "DocumentWithdrawn" for m in ms)
                >= len(withdrawals)
            ),
        )
    )
    withdrawn = {
        m["value"]["withdrawn_event_id"]: m
        for m in messages
        if m["value"]["schema_name"] == "DocumentWithdrawn"
    }
    routed = {m["value"]["event_id"]: m for m in messages}
    for doc_id, old, new, withdrawn_id, routed_id in corrections:
        if old is not None:
            assert withdrawn[withdrawn_id]["topic"].endswith(f"routed.{old}.v1")
            assert withdrawn[withdrawn_id]["key"] == doc_id
        if new is not None:
            assert routed[routed_id]["topic"].endswith(f"routed.{new}.v1")
            assert routed[routed_id]["value"]["supersedes_event_id"] == withdrawn_id

    # The same replay again changes nothing.
    second = tmp_path / "replay2.csv"
    out = _cli(env, "replay", "--since", since, "--model", "champion", "--report", str(second))
    assert list(csv.DictReader(second.open())) == []
    assert len(sql_rows(clean_db, "SELECT 1 FROM routing_correction")) == len(corrections)

    # The same window scored offline gives the champion's scores, document by document.
    scores = tmp_path / "scores.jsonl"
    _cli(
        env,
        "batch",
        "score",
        "--topic-range",
        f"{since}..",
        "--model",
        "champion",
        "--output",
        str(scores),
    )
    rows = {row["document_id"]: row for row in map(json.loads, scores.read_text().splitlines())}
    assert len(rows) == len(events)
    in_processes = tmp_path / "scores-2.jsonl"
    _cli(
        *(env, "batch", "score", "--topic-range", f"{since}..", "--model", "champion"),
        *("--output", str(in_processes), "--processes", "2"),
    )
    assert {
        row["document_id"]: row for row in map(json.loads, in_processes.read_text().splitlines())
    } == rows
    for event in scored:
        assert event.prediction is not None
        row = rows[event.document_id]
        assert (row["label"], row["action"]) == (event.prediction.label, event.prediction.action)
        assert row["confidence"] == pytest.approx(event.prediction.confidence)
        assert row["model_version"] == champion.version
