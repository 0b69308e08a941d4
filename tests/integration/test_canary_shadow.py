"""Canary by partition and shadow scoring in a running classifier, on the real broker, as the
routing policy in the registry says (and changes, without a restart)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.helpers import REPO_ROOT, received, small_examples
from tests.kafkatools import collect, produce_many
from tests.stack import Stack
from triage_classifier.app import create_app
from triage_classifier.settings import Settings
from triage_cli.main import app as cli
from triage_contracts import topics
from triage_ml import model as model_lib
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.kafka import encode_event
from triage_runtime.policy_store import PolicyChange
from triage_runtime.registry import LocalArtifactStore, ModelRegistry
from triage_runtime.routing import RoutingPolicy

DOCUMENTS = 150
CANARY_PARTITIONS = frozenset({1})
SHADOW_SHARE = 0.5
GOLDEN = REPO_ROOT / "data" / "sample" / "golden"


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


def _settings(isolated: Stack, database_url: str, tmp_path: Path, **extra: Any) -> Settings:
    """A classifier following the registry's champion alias in ``tmp_path / "store"``."""
    return Settings.model_validate(
        {
            "kafka_bootstrap": isolated.kafka_bootstrap,
            "database_url": database_url,
            "topic_prefix": isolated.topic_prefix,
            "blob_dir": tmp_path / "blobs",
            "model_alias": "champion",
            "model_store_url": str(tmp_path / "store"),
            "model_cache_dir": tmp_path / "cache",
            "extraction_workers": 1,
        }
        | extra
    )


def _cli(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


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
            traffic = {
                "champion": None,
                "canary": PolicyChange(canary_partitions=CANARY_PARTITIONS),
                "shadow": PolicyChange(shadow_sample=SHADOW_SHARE),
            }
            for alias, artifact in (("champion", champion), ("canary", canary), ("shadow", shadow)):
                await registry.register(artifact, actor="test")
                await registry.move_alias(
                    alias, artifact.name, actor="test", action="promote", policy=traffic[alias]
                )
        finally:
            await engine.dispose()

    asyncio.run(set_aliases())
    settings = _settings(isolated, clean_db, tmp_path, group_id="it-canary")
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
        sample = RoutingPolicy(shadow_sample=SHADOW_SHARE)
        expected_shadow = {e.document_id for e in events if sample.in_shadow_sample(e.document_id)}
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
    # Every event names the policy it was scored under: the second change (the shadow's).
    assert {v["policy_version"] for v in scored.values()} == {2}


def test_one_promote_command_puts_a_canary_on_a_partition_of_running_classifiers(
    isolated: Stack, clean_db: str, tmp_path: Path, three_models: tuple[Path, Path, Path]
) -> None:
    """``triage model promote --to canary --partitions 1``, and the running classifier (no
    restart) scores partition 1 with the canary: shown in /readyz, the metrics and the events."""
    champion, canary, _ = three_models
    store = tmp_path / "store"
    env = {
        "TRIAGE_DATABASE_URL": clean_db,
        "TRIAGE_KAFKA_BOOTSTRAP": isolated.kafka_bootstrap,
        "TRIAGE_TOPIC_PREFIX": isolated.topic_prefix,  # promote wants the routed topics
        "TRIAGE_MODEL_STORE_URL": str(store),
        "TRIAGE_MODEL_CACHE_DIR": str(tmp_path / "cli-cache"),
    }
    for artifact in (champion, canary):
        _cli(env, "model", "register", str(artifact))
    _cli(env, "model", "set-alias", "champion", champion.name, "--reason", "start")
    settings = _settings(
        isolated, clean_db, tmp_path, group_id="it-canary-live", model_refresh_seconds=0.5
    )
    blobs = LocalBlobStore(settings.blob_dir)

    def send(count: int, start: int) -> list[tuple[str, int]]:
        events = [
            received(blobs.put(f"dear team, invoice refund number {start + i}".encode()))
            for i in range(count)
        ]
        partitions = asyncio.run(
            produce_many(
                isolated.kafka_bootstrap,
                isolated.topic(topics.DOCUMENTS),
                [(e.document_id.encode(), encode_event(e)) for e in events],
            )
        )
        return [(e.document_id, p) for e, p in zip(events, partitions, strict=True)]

    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["serving"]["canary_partitions"] == []
        before = send(30, 0)
        output = _cli(
            env,
            "model",
            "promote",
            canary.name,
            "--to",
            "canary",
            "--partitions",
            "1",
            "--golden",
            str(GOLDEN),
            "--force",
            "--reason",
            "try the canary on partition 1",
        )
        assert "the canary scores partitions 1" in output
        deadline = time.monotonic() + 20
        while client.get("/readyz").json()["serving"]["canary_partitions"] != [1]:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.2)
        serving = client.get("/readyz").json()["serving"]
        assert serving["models"] == {"champion": champion.name, "canary": canary.name}
        _wait_for(client, 'triage_classifier_canary_partition{partition="1"} 1.0')
        after = send(60, 100)
        out = asyncio.run(
            collect(
                isolated.kafka_bootstrap,
                [isolated.topic(topics.CLASSIFIED)],
                until=lambda ms: len(ms) >= len(before) + len(after),
            )
        )
        # A threshold change reaches the running classifier the same way: the next events
        # carry the new threshold, the action it implies and the new policy version.
        _cli(
            env,
            *("policy", "set", "--threshold", f"{champion.name}:billing=1.0"),
            *("--reason", "nothing routes to billing while we look"),
        )
        while client.get("/readyz").json()["serving"]["policy_version"] != 2:
            assert time.monotonic() < deadline + 20, client.get("/readyz").json()
            time.sleep(0.2)
        strict = send(20, 200)
        late = asyncio.run(
            collect(
                isolated.kafka_bootstrap,
                [isolated.topic(topics.CLASSIFIED)],
                until=lambda ms: len(ms) >= len(before) + len(after) + len(strict),
            )
        )
    scored = {m["key"]: m["value"] for m in out}
    assert all(scored[doc]["model"]["role"] == "champion" for doc, _ in before)
    for doc, partition in after:
        assert scored[doc]["model"]["role"] == ("canary" if partition == 1 else "champion")
        assert scored[doc]["policy_version"] == 1
    assert any(partition == 1 for _, partition in after)
    scored_late = {m["key"]: m["value"] for m in late}
    by_champion = [scored_late[doc] for doc, p in strict if p != 1]
    assert by_champion, "some documents should land on the champion's partitions"
    for value in by_champion:
        prediction = value["prediction"]
        assert value["policy_version"] == 2
        assert prediction["label"] == "billing"
        assert (prediction["threshold"], prediction["action"]) == (1.0, "review")
    history = _cli(env, "policy", "history")
    assert "try the canary on partition 1" in history
    assert "nothing routes to billing while we look" in history
