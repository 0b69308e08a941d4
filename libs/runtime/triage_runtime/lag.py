"""Consumer lag, measured by each instance for the partitions it holds, exported as a gauge.

A ``Holdings`` listener, given to the subscriber, keeps the partitions the group assigned to
this instance. Every ``interval`` seconds the monitor reads the group's committed offset and
the end offset of those partitions only, through public aiokafka calls; the lag of a
partition is the difference (from the partition's start when nothing is committed there).
Instances of one group hold disjoint partitions, so their gauges sum to the group's lag.
A partition given up leaves this instance's gauge at once; a consumer that is down stops
exporting, which the "service down" alert covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.metrics import CONSUMER_LAG

log = logging.getLogger(__name__)


class Holdings(ConsumerRebalanceListener):  # type: ignore[misc]
    """The partitions the group has assigned to this instance, kept up to date on rebalance."""

    def __init__(self) -> None:
        self._held: frozenset[TopicPartition] = frozenset()
        self._on_revoked: list[Callable[[frozenset[TopicPartition]], None]] = []

    def when_revoked(self, callback: Callable[[frozenset[TopicPartition]], None]) -> None:
        """Call ``callback`` with the partitions given up, as soon as they are."""
        self._on_revoked.append(callback)

    @property
    def held(self) -> frozenset[TopicPartition]:
        """The partitions held now."""
        return self._held

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """Forget the partitions given up."""
        gone = frozenset(revoked)
        self._held = self._held - gone
        for callback in self._on_revoked:
            callback(gone)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Hold the partitions given; aiokafka passes the whole new assignment."""
        self._held = frozenset(assigned)


def lag_per_partition(
    partitions: Collection[TopicPartition],
    *,
    committed: Mapping[TopicPartition, int | None],
    starts: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Messages not yet committed per partition; from its start where nothing is committed."""
    lags: dict[TopicPartition, int] = {}
    for tp in partitions:
        done = committed.get(tp)
        position = done if done is not None and done >= 0 else starts[tp]
        lags[tp] = max(0, ends[tp] - position)
    return lags


class LagMonitor:
    """Samples the lag of the partitions this instance holds and sets ``triage_consumer_lag``."""

    def __init__(
        self,
        kafka: KafkaConnection,
        *,
        service: str,
        group_id: str,
        holdings: Holdings,
        label: Callable[[str], str] = str,
        interval: float = 15.0,
    ) -> None:
        self._kafka = kafka
        self._service = service
        self._group_id = group_id
        self._holdings = holdings
        self._label = label
        self._interval = interval
        self._exported: set[TopicPartition] = set()
        self._task: asyncio.Task[None] | None = None
        # A partition given up leaves the gauge at once, so the instance that takes it over
        # never counts it alongside this one.
        holdings.when_revoked(self._forget)

    async def start(self) -> None:
        """Start sampling in the background."""
        self._task = asyncio.create_task(self._loop(), name=f"lag-{self._service}")

    async def stop(self) -> None:
        """Stop sampling and stop exporting this instance's partitions."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.export({})

    async def _loop(self) -> None:
        while True:
            try:
                self.export(await self.sample())
            except Exception:
                log.warning("could not measure consumer lag", exc_info=True)
            await asyncio.sleep(self._interval)

    def _forget(self, revoked: frozenset[TopicPartition]) -> None:
        for tp in revoked & self._exported:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self._service, self._label(tp.topic), str(tp.partition))
        self._exported -= revoked

    def export(self, lags: Mapping[TopicPartition, int]) -> None:
        """Set the gauge for ``lags``' partitions still held; drop those no longer held."""
        held = {tp: lag for tp, lag in lags.items() if tp in self._holdings.held}
        for tp in self._exported - held.keys():
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self._service, self._label(tp.topic), str(tp.partition))
        for tp, lag in held.items():
            CONSUMER_LAG.labels(self._service, self._label(tp.topic), str(tp.partition)).set(lag)
        self._exported = set(held)

    async def sample(self) -> dict[TopicPartition, int]:
        """Return the lag of each partition this instance holds now."""
        partitions = sorted(self._holdings.held)
        if not partitions:
            return {}
        admin = AIOKafkaAdminClient(**self._kafka.aiokafka_kwargs())
        consumer = AIOKafkaConsumer(**self._kafka.aiokafka_kwargs(), group_id=None)
        await admin.start()
        await consumer.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self._group_id, partitions=partitions)
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
        finally:
            await consumer.stop()
            await admin.close()
        return lag_per_partition(
            partitions,
            committed={tp: meta.offset for tp, meta in offsets.items()},
            starts=starts,
            ends=ends,
        )
