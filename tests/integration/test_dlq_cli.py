"""``triage dlq list|show|redrive`` against the real broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from tests.helpers import PRODUCER
from tests.kafkatools import collect
from tests.stack import Stack
from triage_cli.main import app
from triage_contracts import ErrorClass, topics
from triage_runtime.kafka import UnprocessableError, dead_letter_for, make_broker, publish_event
from triage_runtime.kafka_connection import KafkaConnection


@dataclass
class Record:
    topic: str
    partition: int = 0
    offset: int = 7
    key: bytes | None = b"doc_1"
    value: bytes | None = b'{"schema_name": "DocumentReceived", "broken": true}'
    headers: tuple[tuple[str, bytes], ...] = (("triage-trace-id", b"abc"),)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_list_show_and_redrive(isolated: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_KAFKA_BOOTSTRAP", isolated.kafka_bootstrap)
    monkeypatch.setenv("TRIAGE_TOPIC_PREFIX", isolated.topic_prefix)
    source = isolated.topic(topics.DOCUMENTS)

    async def dead_letter() -> None:
        broker = make_broker(
            KafkaConnection(kafka_bootstrap=isolated.kafka_bootstrap), client_id="test-dlq"
        )
        await broker.start()
        letter = dead_letter_for(
            Record(topic=source),
            stage="classifier",
            producer=PRODUCER,
            error=UnprocessableError(ErrorClass.SCHEMA_INVALID, "not a valid DocumentReceived"),
        )
        await publish_event(broker, isolated.topic(topics.DEADLETTER), letter)
        await broker.stop()

    asyncio.run(dead_letter())
    code, out = _run("dlq", "list", "--error-class", "schema_invalid")
    assert code == 0, out
    assert "1 dead letter(s)" in out
    ref = next(line.split()[1] for line in out.splitlines() if line.startswith("│"))

    code, out = _run("dlq", "show", ref)
    assert code == 0, out
    assert '"error_class": "schema_invalid"' in out
    assert f'"source_topic": "{source}"' in out and '"source_offset": 7' in out
    assert "broken" in out

    code, out = _run("dlq", "redrive", ref, "--dry-run")
    assert code == 0 and "would re-drive" in out
    code, out = _run("dlq", "redrive", "--error-class", "schema_invalid")
    assert code == 0, out
    assert "re-drove 1 message(s)" in out
    [redriven] = asyncio.run(
        collect(isolated.kafka_bootstrap, [source], until=lambda ms: len(ms) >= 1)
    )
    assert redriven["key"] == "doc_1"
    assert redriven["value"] == {"schema_name": "DocumentReceived", "broken": True}
    assert redriven["headers"]["triage-redriven-from"] == f"deadletter:{ref}"

    code, out = _run("dlq", "show", "9:999")
    assert code == 1 and "no dead letter" in out
