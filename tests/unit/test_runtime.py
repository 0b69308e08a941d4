"""Shared runtime pieces: blob store, event codec, dead letters, logs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Collection, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PRODUCER, received
from triage_contracts import DocumentReceivedV1, ErrorClass
from triage_runtime.blobstore import BlobNotFoundError, LocalBlobStore
from triage_runtime.kafka import UnprocessableError, dead_letter_for, decode_event, encode_event
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.logs import JsonFormatter
from triage_runtime.outbox import InBackground
from triage_runtime.settings import CommonSettings


def test_blob_store_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    digest = store.put(b"hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert store.put(b"hello") == digest
    assert store.get(digest) == b"hello"
    assert not list(tmp_path.rglob(".part-*"))


def test_blob_store_refuses_unknown_and_malformed_hashes(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(BlobNotFoundError):
        store.get("0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        store.get("../../etc/passwd")


def test_decode_round_trips_an_event() -> None:
    event = received()
    assert decode_event(encode_event(event), DocumentReceivedV1) == event


@pytest.mark.parametrize(
    ("value", "error_class"),
    [
        (None, ErrorClass.UNDECODABLE),
        (b"\xff\xfe not json", ErrorClass.UNDECODABLE),
        (b'{"schema_name": "DocumentReceived"}', ErrorClass.SCHEMA_INVALID),
    ],
)
def test_undecodable_messages_are_classified(value: bytes | None, error_class: ErrorClass) -> None:
    with pytest.raises(UnprocessableError) as caught:
        decode_event(value, DocumentReceivedV1)
    assert caught.value.error_class is error_class


def test_schema_errors_do_not_echo_input_values() -> None:
    payload = json.loads(encode_event(received()))
    payload["document"]["filename"] = "secret-person@example.com" * 20
    with pytest.raises(UnprocessableError) as caught:
        decode_event(json.dumps(payload).encode(), DocumentReceivedV1)
    assert "example.com" not in caught.value.reason
    assert "document.filename" in caught.value.reason


@dataclass
class FakeRecord:
    topic: str = "triage.documents.v1"
    partition: int = 2
    offset: int = 41
    key: bytes | None = b"doc_x"
    value: bytes | None = b"{broken"
    headers: list[tuple[str, bytes]] = field(default_factory=lambda: [("h", b"v")])


def test_dead_letter_keeps_the_original_and_where_it_came_from() -> None:
    letter = dead_letter_for(
        FakeRecord(),
        stage="classifier",
        producer=PRODUCER,
        error=UnprocessableError(ErrorClass.UNDECODABLE, "value is not valid JSON"),
    )
    assert letter.original_value_b64 is not None
    assert base64.b64decode(letter.original_value_b64) == b"{broken"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "triage.documents.v1",
        2,
        41,
    )
    assert letter.original_headers == {"h": "v"}
    assert letter.error_class is ErrorClass.UNDECODABLE


def test_json_logs_carry_extras_as_fields() -> None:
    record = logging.makeLogRecord(
        {"msg": "document routed", "levelname": "INFO", "name": "x", "document_id": "doc_1"}
    )
    line = json.loads(JsonFormatter("router").format(record))
    assert line["msg"] == "document routed"
    assert line["service"] == "router"
    assert line["document_id"] == "doc_1"


def test_json_logs_drop_uvicorns_coloured_copy_of_the_message() -> None:
    record = logging.makeLogRecord(
        {
            "msg": "Started server process [%d]",
            "args": (7,),
            "levelname": "INFO",
            "name": "uvicorn.error",
            "color_message": "Started server process [\x1b[36m%d\x1b[0m]",
        }
    )
    text = JsonFormatter("router").format(record)
    assert json.loads(text)["msg"] == "Started server process [7]"
    assert "color_message" not in json.loads(text)
    assert "\\u001b" not in text


def test_topic_prefix_applies_to_every_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_TOPIC_PREFIX", "staging.")
    assert CommonSettings().topic("triage.documents.v1") == "staging.triage.documents.v1"
    monkeypatch.setenv("TRIAGE_TOPIC_PREFIX", "bad prefix!")
    with pytest.raises(ValueError, match="TRIAGE_TOPIC_PREFIX"):
        CommonSettings()


def test_blob_store_streams_files_in(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * (3 * 1024 * 1024 + 5))
    digest = store.put_file(source)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
    assert store.put_file(source) == digest
    assert store.get(digest) == source.read_bytes()
    assert not list((tmp_path / "blobs").rglob(".part-*"))


def test_concurrency_limit_refuses_at_once_beyond_the_limit() -> None:
    import asyncio

    from triage_runtime.http import ConcurrencyLimit

    release = asyncio.Event()
    rejected: list[int] = []

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limited = ConcurrencyLimit(
        slow_app,
        limit=lambda: 1,
        paths=("/v1/documents",),
        retry_after_seconds=2,
        on_reject=lambda: rejected.append(1),
    )

    async def call(path: str = "/v1/documents") -> tuple[int, dict[bytes, bytes]]:
        sent: list[MutableMapping[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            raise AssertionError("a refused request must not read its body")

        await limited({"type": "http", "method": "POST", "path": path}, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"])

    async def scenario() -> list[tuple[int, dict[bytes, bytes]]]:
        first = asyncio.create_task(call())
        await asyncio.sleep(0)  # the first request is now in flight
        second = await call()
        release.set()
        other_path = await call("/v1/other")
        return [second, await first, other_path, await call()]

    second, first, other, later = asyncio.run(scenario())
    assert second[0] == 503 and second[1][b"retry-after"] == b"2"
    assert (first[0], other[0], later[0]) == (202, 202, 202)
    assert rejected == [1] and limited.in_flight == 0


def test_rate_limiter_allows_a_burst_then_says_how_long_to_wait() -> None:
    from triage_runtime.http import RateLimiter

    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    assert [limiter.take("a"), limiter.take("a")] == [0.0, 0.0]
    assert limiter.take("a") == pytest.approx(1.0)  # one token a second
    assert limiter.take("b") == 0.0  # callers have their own buckets
    now[0] = 1.0
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


async def test_publish_many_delivers_in_order_through_the_in_memory_broker() -> None:
    """FastStream's TestKafkaBroker hands back no future for ``no_confirm``; handler tests
    publish through it, so ``publish_many`` must not wait on one."""
    from aiokafka.structs import ConsumerRecord
    from faststream.kafka import TestKafkaBroker
    from faststream.kafka.annotations import KafkaMessage

    from triage_runtime.kafka import make_broker, publish_many

    broker = make_broker(KafkaConnection(kafka_bootstrap="127.0.0.1:1"), client_id="test")
    seen: list[tuple[str, bytes | None]] = []

    @broker.subscriber("out")
    async def collect(message: KafkaMessage) -> None:
        record: ConsumerRecord[bytes, bytes] = message.raw_message  # one: not a batch subscriber
        seen.append((record.topic, record.key))

    events = [received("01" * 32), received("02" * 32)]
    async with TestKafkaBroker(broker):
        await publish_many(broker, [("out", event) for event in events])
    assert seen == [("out", event.document_id.encode()) for event in events]


async def test_in_background_returns_before_kafka_answers_and_the_events_still_go_out() -> None:
    class Slow:
        def __init__(self) -> None:
            self.answer = asyncio.Event()
            self.published: list[uuid.UUID] = []

        async def publish(self, event_ids: Collection[uuid.UUID]) -> int:
            await self.answer.wait()  # Kafka is slow (or down, and the timeout long)
            self.published += event_ids
            return len(event_ids)

    slow = Slow()
    ids = [uuid.uuid4(), uuid.uuid4()]
    started = await asyncio.wait_for(InBackground(slow).publish(ids), timeout=1.0)
    assert started == 0 and slow.published == []
    slow.answer.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert slow.published == ids
