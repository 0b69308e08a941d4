"""``TopicWindow`` finds a topic's partitions through the admin API, on the real broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.stack import Stack
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.topic_admin import TopicAdmin
from triage_runtime.topic_window import TopicWindow


def test_a_window_reads_its_records_and_refuses_a_missing_topic_without_making_it(
    stack: Stack,
) -> None:
    kafka = KafkaConnection(kafka_bootstrap=stack.kafka_bootstrap)
    since = datetime.now(UTC) - timedelta(minutes=1)

    async def run() -> None:
        missing = stack.topic("window-missing")
        window = TopicWindow(kafka, missing, since=since, until=None, group_id=missing)
        with pytest.raises(LookupError, match="does not exist"):
            async with window:
                pass
        async with TopicAdmin(kafka) as admin:
            # Looking did not create it, whatever the broker's auto-create setting.
            assert await admin.partitions(missing) is None

        made = stack.topic("window-made")
        admin_client = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
        await admin_client.start()
        try:
            await admin_client.create_topics([NewTopic(made, 2, 1)])
        finally:
            await admin_client.close()
        producer = AIOKafkaProducer(**kafka.aiokafka_kwargs())
        await producer.start()
        try:
            for n in range(3):
                await producer.send_and_wait(made, f"record {n}".encode(), partition=0)
        finally:
            await producer.stop()
        async with TopicWindow(kafka, made, since=since, until=None, group_id=made) as window:
            assert [(r.partition, r.size) for r in window.ranges] == [(0, 3), (1, 0)]
            read = [r.value async for batch in window.batches() for r in batch]
        assert read == [b"record 0", b"record 1", b"record 2"]

    asyncio.run(run())
