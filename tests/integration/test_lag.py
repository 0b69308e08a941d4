"""Consumer lag as the consuming service measures it, on the real broker."""

from __future__ import annotations

import asyncio
import re
import time

from aiokafka import AIOKafkaConsumer
from fastapi.testclient import TestClient

from tests.kafkatools import produce_many
from tests.stack import Stack
from triage_contracts import topics
from triage_router.app import create_app as router_app
from triage_router.settings import Settings as RouterSettings
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.lag import LagMonitor
from triage_runtime.metrics import CONSUMER_LAG


def test_lag_is_what_the_group_has_not_committed(isolated: Stack) -> None:
    topic = isolated.topic("lag-probe")

    async def scenario() -> tuple[int, int, int]:
        await produce_many(
            isolated.kafka_bootstrap, topic, [(f"k{i}".encode(), b"x") for i in range(12)]
        )
        monitor = LagMonitor(
            KafkaConnection(kafka_bootstrap=isolated.kafka_bootstrap),
            service="test",
            group_id="lag-group",
            topics=[topic],
        )
        before = sum((await monitor.sample()).values())
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=isolated.kafka_bootstrap,
            group_id="lag-group",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            read = 0
            while read < 5:
                batch = await consumer.getmany(timeout_ms=1000, max_records=5 - read)
                read += sum(len(records) for records in batch.values())
            await consumer.commit()
            partway = sum((await monitor.sample()).values())
            while read < 12:
                batch = await consumer.getmany(timeout_ms=1000)
                read += sum(len(records) for records in batch.values())
            await consumer.commit()
        finally:
            await consumer.stop()
        after = sum((await monitor.sample()).values())
        return before, partway, after

    assert asyncio.run(scenario()) == (12, 7, 0)


def test_the_router_exports_its_lag_per_partition(isolated: Stack, clean_db: str) -> None:
    settings = RouterSettings(
        kafka_bootstrap=isolated.kafka_bootstrap,
        database_url=clean_db,
        topic_prefix=isolated.topic_prefix,
        group_id="it-lag-router",
        lag_interval_seconds=0.2,
    )
    pattern = re.compile(
        r'triage_consumer_lag\{partition="(\d+)",service="router",'
        rf'topic="{re.escape(topics.CLASSIFIED)}"\}} (\S+)'
    )
    # Other routers in this process exported the same series: mark them, so only a value
    # this router's monitor measured can pass.
    for partition in ("0", "1", "2"):
        CONSUMER_LAG.labels("router", topics.CLASSIFIED, partition).set(-1)
    with TestClient(router_app(settings)) as client:
        deadline = time.monotonic() + 20
        found: list[tuple[str, str]] = []
        while time.monotonic() < deadline:
            found = pattern.findall(client.get("/metrics").text)
            if len(found) == 3 and all(float(value) >= 0 for _, value in found):
                break
            time.sleep(0.2)
    assert sorted(p for p, _ in found) == ["0", "1", "2"]
    assert all(float(value) == 0 for _, value in found), found
