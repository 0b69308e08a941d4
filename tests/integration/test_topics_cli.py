"""``triage topics plan|apply`` against the real broker, under a topic prefix of its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from tests.stack import Stack
from triage_cli.main import app
from triage_contracts import topics
from triage_contracts.topics import declared_topics
from triage_runtime.db.engine import make_async_engine
from triage_runtime.registry import LocalArtifactStore, ModelRegistry

QUEUES = ("billing", "legal")


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["topics", *args, "--replication-factor", "1"])
    return result.exit_code, result.output


def _queues() -> list[str]:
    return [arg for q in QUEUES for arg in ("--queue", q)]


async def _admin(stack: Stack) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    return admin


def _retention(stack: Stack, name: str) -> str:
    async def run() -> str:
        admin = await _admin(stack)
        try:
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, stack.topic(name))]
            )
        finally:
            await admin.close()
        entries = response.resources[0][4]
        return str(next(e[1] for e in entries if e[0] == "retention.ms"))

    return asyncio.run(run())


def _set_retention(stack: Stack, name: str, value: str) -> None:
    async def run() -> None:
        admin = await _admin(stack)
        try:
            await admin.alter_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC, stack.topic(name), {"retention.ms": value}
                    )
                ]
            )
        finally:
            await admin.close()

    asyncio.run(run())


def _prefixed_topics(stack: Stack) -> set[str]:
    async def run() -> set[str]:
        admin = await _admin(stack)
        try:
            return {t for t in await admin.list_topics() if t.startswith(stack.topic_prefix)}
        finally:
            await admin.close()

    return asyncio.run(run())


def test_plan_apply_then_no_difference_and_a_changed_retention_is_put_back(
    no_topics: Stack, clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAGE_KAFKA_BOOTSTRAP", no_topics.kafka_bootstrap)
    monkeypatch.setenv("TRIAGE_TOPIC_PREFIX", no_topics.topic_prefix)
    monkeypatch.setenv("TRIAGE_DATABASE_URL", clean_db)  # no model: only --queue's queues
    declared = declared_topics(QUEUES, replication_factor=1)

    code, out = _run("plan", *_queues(), "--check")
    assert code == 1, out
    for spec in declared:
        assert f"+ create {spec.name}: partitions={spec.partitions}" in out, out
    assert _prefixed_topics(no_topics) == set(), "plan must change nothing"

    code, out = _run("apply", *_queues())
    assert code == 0, out
    assert f"applied {len(declared)} change(s)" in out
    assert _prefixed_topics(no_topics) == {no_topics.topic(s.name) for s in declared}

    code, out = _run("plan", *_queues(), "--check")
    assert code == 0, out
    assert "no difference" in out

    declared_retention = str(declared[0].retention_ms)
    assert _retention(no_topics, topics.DOCUMENTS) == declared_retention
    _set_retention(no_topics, topics.DOCUMENTS, "60000")
    code, out = _run("plan", *_queues())
    assert code == 0, out
    assert f"~ alter {topics.DOCUMENTS}: retention.ms 60000 -> {declared_retention}" in out
    assert out.count("~ alter") == 1, out  # the other configs set at creation survive

    code, out = _run("apply", *_queues())
    assert code == 0, out
    assert _retention(no_topics, topics.DOCUMENTS) == declared_retention
    code, out = _run("plan", *_queues(), "--check")
    assert code == 0 and "no difference" in out, out

    # A new queue (a new label) is one more topic to create, and only that.
    code, out = _run("plan", *_queues(), "--queue", "hr")
    assert out.strip().splitlines() == [
        line for line in out.strip().splitlines() if topics.routed_topic("hr") in line
    ], out


def test_two_applies_at_once_both_succeed_and_leave_the_declared_topics(
    no_topics: Stack, clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAGE_KAFKA_BOOTSTRAP", no_topics.kafka_bootstrap)
    monkeypatch.setenv("TRIAGE_TOPIC_PREFIX", no_topics.topic_prefix)
    monkeypatch.setenv("TRIAGE_DATABASE_URL", clean_db)
    env = {
        **os.environ,
        "TRIAGE_KAFKA_BOOTSTRAP": no_topics.kafka_bootstrap,
        "TRIAGE_TOPIC_PREFIX": no_topics.topic_prefix,
        "TRIAGE_TOPICS_REPLICATION_FACTOR": "1",
    }
    triage = str(Path(sys.executable).parent / "triage")
    runs = [
        subprocess.Popen(
            [triage, "topics", "apply", *_queues()],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    declared = declared_topics(QUEUES, replication_factor=1)
    assert _prefixed_topics(no_topics) == {no_topics.topic(s.name) for s in declared}
    code, out = _run("plan", *_queues(), "--check")
    assert code == 0 and "no difference" in out, out


def test_the_labels_of_aliased_models_are_queues_with_topics(
    no_topics: Stack,
    clean_db: str,
    small_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIAGE_KAFKA_BOOTSTRAP", no_topics.kafka_bootstrap)
    monkeypatch.setenv("TRIAGE_TOPIC_PREFIX", no_topics.topic_prefix)
    monkeypatch.setenv("TRIAGE_DATABASE_URL", clean_db)
    monkeypatch.setenv("TRIAGE_MODEL_STORE_URL", str(tmp_path / "store"))

    async def register(*, champion: bool) -> None:
        engine = make_async_engine(clean_db)
        registry = ModelRegistry(engine, LocalArtifactStore(tmp_path / "store"))
        try:
            await registry.register(small_model, actor="test")
            if champion:
                await registry.move_alias(
                    "champion", small_model.name, actor="test", action="promote"
                )
        finally:
            await engine.dispose()

    routed = {topics.routed_topic(label) for label in ("billing", "legal", "technical")}
    asyncio.run(register(champion=False))
    code, out = _run("plan", "--queue", "hr")
    assert code == 0, out
    assert not any(name in out for name in routed), "a model no alias points at has no queues"

    asyncio.run(register(champion=True))
    code, out = _run("plan", "--queue", "hr")
    assert code == 0, out
    assert all(f"+ create {name}:" in out for name in routed), out
    assert f"+ create {topics.routed_topic('hr')}:" in out
    code, out = _run("plan", "--no-registry")
    assert not any(name in out for name in routed), out
