"""Canary by partition and shadow scoring in a running classifier, on the real broker."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import received, small_examples
from tests.kafkatools import collect, produce_many
from tests.stack import Stack
from triage_classifier.app import create_app
from triage_classifier.domain import in_shadow_sample
from triage_classifier.settings import Settings
from triage_contracts import topics
from triage_ml import model as model_lib
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.kafka import encode_event
from triage_runtime.registry import LocalArtifactStore, ModelRegistry

DOCUMENTS = 150
CANARY_PARTITIONS = frozenset({1})
SHADOW_SHARE = 0.5


def _model(tmp_path_factory: pytest.TempPathFactory, seed: int, per_label: int) -> Path:
    pipeline, metadata, *_ = model_lib.train(small_examples(per_label=per_label), seed=seed)
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp(f"m{seed}"))


@pytest.fixture(scope="module")
def three_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Champion, canary and shadow: three different versions."""
    return (
        _model(tmp_path_factory, 0, 30),
        _model(tmp_path_factory, 5, 24),
        _model(tmp_path_factory, 7, 18),
    )


def _wait_for(client: TestClient, needle: str) -> None:
    deadline = time.monotonic() + 20
    while needle not in client.get("/metrics").text:
        assert time.monotonic() < deadline, f"{needle} never appeared in /metrics"
        time.sleep(0.1)


def test_canary_scores_exactly_its_partitions_and_shadow_its_sample(
    isolated: Stack, clean_db: str, tmp_path: Path, three_models: tuple[Path, Path, Path]
) -> None:
    champion, canary, shadow = three_models
    store = tmp_path / "store"

    async def set_aliases() -> None:
        engine = make_async_engine(clean_db)
        registry = ModelRegistry(engine, LocalArtifactStore(store))
        try:
            for alias, artifact in (("champion", champion), ("canary", canary), ("shadow", shadow)):
                await registry.register(artifact, actor="test")
                await registry.move_alias(alias, artifact.name, actor="test", action="promote")
        finally:
            await engine.dispose()

    asyncio.run(set_aliases())
    settings = Settings.model_validate(
        {
            "kafka_bootstrap": isolated.kafka_bootstrap,
            "database_url": clean_db,
            "topic_prefix": isolated.topic_prefix,
            "blob_dir": tmp_path / "blobs",
            "model_alias": "champion",
            "model_store_url": str(store),
            "model_cache_dir": tmp_path / "cache",
            "canary_partitions": "1",
            "shadow_sample": SHADOW_SHARE,
            "group_id": "it-canary",
            "extraction_workers": 1,
        }
    )
    blobs = LocalBlobStore(settings.blob_dir)
    words = ["invoice refund overdue", "server outage login error", "contract clause breach nda"]
    events = [
        received(blobs.put(f"dear team, {words[i % 3]} number {i}".encode()))
        for i in range(DOCUMENTS)
    ]
    with TestClient(create_app(settings)) as client:
        for artifact, role in ((canary, "canary"), (shadow, "shadow")):
            _wait_for(client, f'model_role="{role}",model_version="{artifact.name}"}} 1.0')
        partitions = asyncio.run(
            produce_many(
                isolated.kafka_bootstrap,
                isolated.topic(topics.DOCUMENTS),
                [(e.document_id.encode(), encode_event(e)) for e in events],
            )
        )
        expected_shadow = {
            e.document_id for e in events if in_shadow_sample(e.document_id, SHADOW_SHARE)
        }
        out = asyncio.run(
            collect(
                isolated.kafka_bootstrap,
                [isolated.topic(topics.CLASSIFIED), isolated.topic(topics.CLASSIFIED_SHADOW)],
                until=lambda ms: (
                    sum(m["topic"].endswith("classified.v1") for m in ms) >= DOCUMENTS
                    and sum(m["topic"].endswith("shadow.v1") for m in ms) >= len(expected_shadow)
                ),
            )
        )

    partition_of = {e.document_id: p for e, p in zip(events, partitions, strict=True)}
    scored = {m["key"]: m["value"] for m in out if m["topic"].endswith("classified.v1")}
    assert len(scored) == DOCUMENTS
    # Every document from a canary partition was scored by the canary, every other by the
    # champion: the canary's share of traffic is exactly the share of those partitions.
    for document_id, value in scored.items():
        canary_partition = partition_of[document_id] in CANARY_PARTITIONS
        want = (canary, "canary") if canary_partition else (champion, "champion")
        assert (value["model"]["version"], value["model"]["role"]) == (want[0].name, want[1])
    roles = Counter(v["model"]["role"] for v in scored.values())
    in_canary_partitions = sum(p in CANARY_PARTITIONS for p in partitions)
    assert roles == {"canary": in_canary_partitions, "champion": DOCUMENTS - in_canary_partitions}
    assert 0 < in_canary_partitions < DOCUMENTS

    shadowed = [m for m in out if m["topic"].endswith("shadow.v1")]
    assert {m["key"] for m in shadowed} == expected_shadow
    assert len(shadowed) == len(expected_shadow)
    assert all(m["value"]["model"] == {"version": shadow.name, "role": "shadow"} for m in shadowed)
    assert all(m["headers"]["triage-model-role"] == "shadow" for m in shadowed)
    # The sample is chosen by id: about the configured share, never all or none.
    assert 0.3 < len(expected_shadow) / DOCUMENTS < 0.7
