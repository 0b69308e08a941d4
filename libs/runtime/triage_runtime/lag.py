"""Consumer lag, measured by the consuming service itself and exported as a gauge.

Every ``interval`` seconds the monitor asks the cluster for the group's committed offsets and
each partition's end offset; lag is the difference (from the partition's start when the group
has committed nothing there). A consumer that is alive but stuck shows lag that only grows;
a consumer that is down stops exporting, which the "service down" alert covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.metrics import CONSUMER_LAG

log = logging.getLogger(__name__)


class LagMonitor:
    """Samples one consumer group's lag on some topics and sets ``triage_consumer_lag``."""

    def __init__(
        self,
        kafka: KafkaConnection,
        *,
        service: str,
        group_id: str,
        topics: Sequence[str],
        label: Callable[[str], str] = str,
        interval: float = 15.0,
    ) -> None:
        self._kafka = kafka
        self._service = service
        self._group_id = group_id
        self._topics = tuple(topics)
        self._label = label
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start sampling in the background."""
        self._task = asyncio.create_task(self._loop(), name=f"lag-{self._service}")

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                for (topic, partition), lag in (await self.sample()).items():
                    CONSUMER_LAG.labels(self._service, self._label(topic), str(partition)).set(lag)
            except Exception:
                log.warning("could not measure consumer lag", exc_info=True)
            await asyncio.sleep(self._interval)

    async def sample(self) -> dict[tuple[str, int], int]:
        """Return the group's lag per (topic, partition) now."""
        admin = AIOKafkaAdminClient(**self._kafka.aiokafka_kwargs())
        consumer = AIOKafkaConsumer(**self._kafka.aiokafka_kwargs(), group_id=None)
        await admin.start()
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(self._group_id)
            partitions = []
            for topic in self._topics:
                found = consumer.partitions_for_topic(topic)
                if not found:
                    await consumer._client.force_metadata_update()
                    found = consumer.partitions_for_topic(topic) or set()
                partitions += [TopicPartition(topic, p) for p in sorted(found)]
            if not partitions:
                return {}
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
        finally:
            await consumer.stop()
            await admin.close()
        lags: dict[tuple[str, int], int] = {}
        for tp in partitions:
            position = committed.get(tp)
            done = position.offset if position is not None and position.offset >= 0 else starts[tp]
            lags[(tp.topic, tp.partition)] = max(0, ends[tp] - done)
        return lags
