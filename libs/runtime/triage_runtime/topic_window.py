"""Read one topic between two points in time, in a consumer group of its own.

Used by ``triage replay`` and ``triage batch score --topic-range``. The start of the window
on each partition is the first record whose timestamp is at or after ``since`` (Kafka's
``offsets_for_times``); the end is the first record at or after ``until``, or the partition's
end when the window is opened if ``until`` is not given, so records that arrive while a
window is read are not part of it. Offsets are committed to the group as batches are
finished, which shows the window's progress in the usual consumer-lag tools.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.topic_admin import TopicAdmin

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """Parse ``2026-11-26T10:00`` (UTC unless an offset is given), ``now``, or ``90m``/``2h``/
    ``1d`` ago; raise ValueError with the accepted forms otherwise."""
    now = now or datetime.now(UTC)
    text = value.strip()
    if text == "now":
        return now
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2)
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not a time: use ISO 8601 (2026-11-26T10:00, UTC by default), "
            "'now', or an age such as 30m, 2h, 1d"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PartitionRange:
    """The offsets of one partition inside the window: ``start`` included, ``end`` excluded."""

    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        """How many records the range holds."""
        return max(0, self.end - self.start)


class TopicWindow:
    """The records of ``topic`` from ``since`` up to ``until``, in batches."""

    def __init__(
        self,
        kafka: KafkaConnection,
        topic: str,
        *,
        since: datetime,
        until: datetime | None,
        group_id: str,
        batch_size: int = 64,
    ) -> None:
        if until is not None and until <= since:
            raise ValueError("the window's end must be after its start")
        self.topic = topic
        self.since = since
        self.until = until
        self._batch_size = batch_size
        self._kafka = kafka
        self._consumer = AIOKafkaConsumer(
            **kafka.aiokafka_kwargs(),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=batch_size,
        )
        self.ranges: tuple[PartitionRange, ...] = ()

    @property
    def total(self) -> int:
        """How many records the window holds (known once opened)."""
        return sum(r.size for r in self.ranges)

    async def __aenter__(self) -> TopicWindow:
        try:
            await self._consumer.start()
            self.ranges = await self._find_ranges()
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def _find_ranges(self) -> tuple[PartitionRange, ...]:
        consumer = self._consumer
        # Asked of the cluster now (the admin API), not of the consumer's metadata cache,
        # which may predate the topic.
        async with TopicAdmin(self._kafka) as admin:
            partitions = await admin.partitions(self.topic)
        if not partitions:
            raise LookupError(f"topic {self.topic!r} does not exist")
        tps = [TopicPartition(self.topic, p) for p in partitions]
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times({tp: _millis(self.since) for tp in tps})
        stops: dict[TopicPartition, Any] = {}
        if self.until is not None:
            stops = await consumer.offsets_for_times({tp: _millis(self.until) for tp in tps})
        ranges = []
        for tp in tps:
            start = starts[tp].offset if starts.get(tp) is not None else ends[tp]
            stop = stops[tp].offset if stops.get(tp) is not None else ends[tp]
            ranges.append(PartitionRange(tp.partition, start, max(start, stop)))
        consumer.assign([TopicPartition(self.topic, r.partition) for r in ranges if r.size])
        for r in ranges:
            if r.size:
                consumer.seek(TopicPartition(self.topic, r.partition), r.start)
        return tuple(ranges)

    async def batches(self) -> AsyncIterator[list[Any]]:
        """Yield lists of ConsumerRecords until every partition reached its end of the window."""
        ends = {r.partition: r.end for r in self.ranges if r.size}
        while ends:
            fetched = await self._consumer.getmany(timeout_ms=1000, max_records=self._batch_size)
            batch: list[Any] = []
            for tp, records in fetched.items():
                end = ends.get(tp.partition)
                if end is not None:
                    batch.extend(r for r in records if r.offset < end)
            for partition, end in list(ends.items()):
                tp = TopicPartition(self.topic, partition)
                if await self._consumer.position(tp) >= end:
                    del ends[partition]
                    self._consumer.pause(tp)
            if batch:
                yield batch

    async def commit(self, batch: list[Any]) -> None:
        """Record in the group that ``batch`` is done."""
        done: dict[TopicPartition, OffsetAndMetadata] = {}
        for record in batch:
            tp = TopicPartition(record.topic, record.partition)
            if tp not in done or done[tp].offset <= record.offset:
                done[tp] = OffsetAndMetadata(record.offset + 1, "")
        if done:
            await self._consumer.commit(done)


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
