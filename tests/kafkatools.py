"""Helpers to read what services published, from the real broker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from triage_contracts import DocumentClassifiedV1, DocumentReceivedV1
from triage_runtime.kafka import encode_event
from triage_runtime.kafka_connection import KafkaConnection


async def produce(
    bootstrap: str,
    topic: str,
    value: bytes,
    *,
    key: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Publish one raw message and wait for the broker's acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            value,
            key=key,
            headers=[(k, v.encode()) for k, v in (headers or {}).items()],
        )
    finally:
        await producer.stop()


async def produce_many(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]
) -> list[int]:
    """Publish (key, value) pairs with the default partitioner; return each one's partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=key) for key, value in messages]
        return [(await future).partition for future in sent]
    finally:
        await producer.stop()


async def produce_on_one_partition(
    bootstrap: str, topic: str, events: Iterable[DocumentReceivedV1 | DocumentClassifiedV1]
) -> None:
    """Publish events in this order on partition 0, keyed by document id, each acknowledged
    before the next: a consumer reads them in this order, in one batch if they are there
    before it starts."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic, encode_event(event), key=event.document_id.encode(), partition=0
            )
    finally:
        await producer.stop()


async def collect(
    bootstrap: str | KafkaConnection,
    topics: list[str] | None = None,
    *,
    pattern: str | None = None,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Read from the beginning until ``until(messages)`` holds; each message is a dict with
    topic, partition, offset, key, headers and the decoded JSON value, once: a pattern
    subscription that finds a new topic reassigns and may read a record again. ``bootstrap``
    is the brokers (PLAINTEXT) or a whole connection (TLS, SASL)."""
    connection = (
        bootstrap.aiokafka_kwargs()
        if isinstance(bootstrap, KafkaConnection)
        else {"bootstrap_servers": bootstrap}
    )
    consumer = AIOKafkaConsumer(
        **connection,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    if pattern:
        consumer.subscribe(pattern=pattern)
    else:
        consumer.subscribe(topics or [])
    seen: list[dict[str, Any]] = []
    read: set[tuple[str, int, int]] = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    if (r.topic, r.partition, r.offset) in read:
                        continue
                    read.add((r.topic, r.partition, r.offset))
                    seen.append(
                        {
                            "topic": r.topic,
                            "partition": r.partition,
                            "offset": r.offset,
                            "key": r.key.decode() if r.key else None,
                            "headers": {k: v.decode() for k, v in r.headers},
                            "value": json.loads(r.value) if r.value else None,
                        }
                    )
            if until(seen):
                return seen
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    raise AssertionError(f"condition not met within {timeout}s; saw {len(seen)} messages")
