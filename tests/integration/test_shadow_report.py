"""``triage shadow report`` on what a running classifier scored with a champion and a shadow,
on the real broker, and the decisions people made, in the real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.helpers import TOPIC_WORDS, received, small_examples, sql_rows
from tests.kafkatools import collect, produce_many
from tests.stack import Stack, review_workflow
from triage_classifier.app import create_app
from triage_classifier.settings import Settings
from triage_cli.exit_codes import SHADOW_WORSE
from triage_cli.main import app as cli
from triage_contracts import topics
from triage_ml import model as model_lib
from triage_ml.model import Example
from triage_router.app import create_app as router_app
from triage_router.settings import Settings as RouterSettings
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.kafka import encode_event, make_broker
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.outbox import Outbox
from triage_runtime.policy_store import PolicyChange
from triage_runtime.registry import LocalArtifactStore, ModelRegistry

DOCUMENTS = 60
DECIDED = 30
LABELS = list(TOPIC_WORDS)
ROTATED = {label: LABELS[(i + 1) % len(LABELS)] for i, label in enumerate(LABELS)}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A champion, and a shadow trained on the same texts with every label rotated: on these
    documents it is wrong wherever the champion is right."""
    examples = small_examples()
    rotated = [Example(text=e.text, label=ROTATED[e.label]) for e in examples]
    out = []
    for name, data in (("champion", examples), ("shadow", rotated)):
        pipeline, metadata, *_ = model_lib.train(data, seed=0)
        out.append(model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp(name)))
    return out[0], out[1]


def _decide(isolated: Stack, database_url: str, decisions: dict[int, str]) -> None:
    """Reviewers decide review items as the review UI does (claim, then decide)."""

    async def run() -> None:
        engine = make_async_engine(database_url)
        broker = make_broker(
            KafkaConnection(kafka_bootstrap=isolated.kafka_bootstrap), client_id="test-review"
        )
        await broker.start()
        outbox = Outbox(engine, broker, service="review-ui", topic_prefix=isolated.topic_prefix)
        flow = review_workflow(engine, isolated, LABELS, outbox)
        try:
            for item_id, label in decisions.items():
                await flow.claim(item_id, reviewer="alice")
                await flow.decide(item_id, reviewer="alice", label=label)
        finally:
            await broker.stop()
            await engine.dispose()

    asyncio.run(run())


def test_a_shadow_people_keep_overruling_is_reported_worse(
    isolated: Stack, clean_db: str, tmp_path: Path, models: tuple[Path, Path]
) -> None:
    champion, shadow = models
    store = tmp_path / "store"

    async def set_aliases() -> None:
        engine = make_async_engine(clean_db)
        registry = ModelRegistry(engine, LocalArtifactStore(store))
        try:
            for alias, artifact, traffic in (
                ("champion", champion, None),
                # Every document scored by the shadow too, and every one sent to review (the
                # confident ones as quality samples), so people can decide any of them.
                ("shadow", shadow, PolicyChange(shadow_sample=1.0, quality_sample=1.0)),
            ):
                await registry.register(artifact, actor="test")
                await registry.move_alias(
                    alias, artifact.name, actor="test", action="promote", policy=traffic
                )
        finally:
            await engine.dispose()

    asyncio.run(set_aliases())
    common: dict[str, Any] = {
        "kafka_bootstrap": isolated.kafka_bootstrap,
        "database_url": clean_db,
        "topic_prefix": isolated.topic_prefix,
        "blob_dir": tmp_path / "blobs",
    }
    settings = Settings.model_validate(
        common
        | {
            "model_alias": "champion",
            "model_store_url": str(store),
            "model_cache_dir": tmp_path / "cache",
            "extraction_workers": 1,
            "group_id": "it-shadow-report",
        }
    )
    router = RouterSettings.model_validate(common | {"group_id": "it-shadow-router"})
    blobs = LocalBlobStore(settings.blob_dir)
    truth = {}
    events = []
    for i in range(DOCUMENTS):
        label = LABELS[i % len(LABELS)]
        words = " ".join(TOPIC_WORDS[label].split()[:6])
        event = received(blobs.put(f"dear team {words} regards number {1000 + i}".encode()))
        truth[event.document_id] = label
        events.append(event)
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    with TestClient(create_app(settings)), TestClient(router_app(router)):
        asyncio.run(
            produce_many(
                isolated.kafka_bootstrap,
                isolated.topic(topics.DOCUMENTS),
                [(e.document_id.encode(), encode_event(e)) for e in events],
            )
        )
        out = asyncio.run(
            collect(
                isolated.kafka_bootstrap,
                [isolated.topic(topics.CLASSIFIED), isolated.topic(topics.CLASSIFIED_SHADOW)],
                until=lambda ms: len(ms) >= 2 * DOCUMENTS,
            )
        )
        deadline = time.monotonic() + 60
        while sql_rows(clean_db, "SELECT count(*) FROM review_item")[0][0] < DOCUMENTS:
            assert time.monotonic() < deadline, "the router did not send every document to review"
            time.sleep(0.2)
    champion_labels = {
        m["key"]: m["value"]["prediction"]["label"]
        for m in out
        if m["topic"].endswith("classified.v1")
    }
    shadow_labels = {
        m["key"]: m["value"]["prediction"]["label"] for m in out if m["topic"].endswith("shadow.v1")
    }
    assert champion_labels == truth  # the champion is right on all of them
    assert all(shadow_labels[d] == ROTATED[label] for d, label in truth.items())
    items = sql_rows(clean_db, "SELECT id, document_id FROM review_item ORDER BY id")
    _decide(isolated, clean_db, {item: truth[doc] for item, doc in items[:DECIDED]})

    env = {
        "TRIAGE_KAFKA_BOOTSTRAP": isolated.kafka_bootstrap,
        "TRIAGE_DATABASE_URL": clean_db,
        "TRIAGE_TOPIC_PREFIX": isolated.topic_prefix,
    }
    plot, report_file = tmp_path / "shadow.png", tmp_path / "shadow.json"
    args = ["shadow", "report", "--since", since, "--plot", str(plot), "--json", str(report_file)]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == SHADOW_WORSE, result.output
    assert f"documents both scored: {DOCUMENTS}" in result.output
    assert "agreement: 0.000" in result.output
    assert "champion accuracy: 1.000" in result.output
    assert "shadow accuracy:   0.000" in result.output
    assert "verdict: shadow worse" in result.output
    report = json.loads(report_file.read_text())["report"]
    assert report["decided"] == DECIDED
    assert report["champion_versions"] == [champion.name]
    assert report["shadow_versions"] == [shadow.name]
    labels = report["labels"]
    for champion_label, row in zip(labels, report["confusion"], strict=True):
        # every document the champion called X, the shadow called X's rotation
        expected = [DOCUMENTS // len(LABELS) if ROTATED[champion_label] == s else 0 for s in labels]
        assert row == expected
    assert plot.read_bytes().startswith(PNG_MAGIC)

    # Fewer decisions than needed: no verdict, exit 0.
    result = CliRunner().invoke(cli, [*args[:4], "--min-decided", str(DECIDED + 1)], env=env)
    assert result.exit_code == 0, result.output
    assert "verdict: no evidence" in result.output
