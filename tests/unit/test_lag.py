"""Per-instance lag: the partitions held, the arithmetic, and what the gauge keeps."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.lag import Holdings, LagMonitor, lag_per_partition
from triage_runtime.metrics import CONSUMER_LAG

UNREACHABLE = KafkaConnection(kafka_bootstrap="127.0.0.1:1")

A, B, C = (TopicPartition("t", p) for p in range(3))


def exported(service: str) -> dict[str, float]:
    return {
        sample.labels["partition"]: sample.value
        for metric in CONSUMER_LAG.collect()
        for sample in metric.samples
        if sample.labels["service"] == service
    }


def test_holdings_follow_rebalances() -> None:
    holdings = Holdings()

    async def rebalance() -> list[frozenset[TopicPartition]]:
        seen = [holdings.held]
        await holdings.on_partitions_assigned({A, B, C})
        seen.append(holdings.held)
        await holdings.on_partitions_revoked({A, B, C})
        seen.append(holdings.held)
        await holdings.on_partitions_assigned({B})
        seen.append(holdings.held)
        return seen

    assert asyncio.run(rebalance()) == [frozenset(), {A, B, C}, frozenset(), {B}]


def test_lag_counts_from_the_start_where_nothing_is_committed() -> None:
    lags = lag_per_partition(
        [A, B, C],
        committed={A: 7, B: None, C: -1},
        starts={A: 0, B: 4, C: 2},
        ends={A: 10, B: 9, C: 2},
    )
    assert lags == {A: 3, B: 5, C: 0}


def test_a_partition_given_up_is_no_longer_exported() -> None:
    holdings = Holdings()
    monitor = LagMonitor(UNREACHABLE, service="unit-lag", group_id="g", holdings=holdings)

    async def scenario() -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        await holdings.on_partitions_assigned({A, B})
        monitor.export({A: 3, B: 4})
        first = exported("unit-lag")
        await holdings.on_partitions_revoked({A, B})
        await holdings.on_partitions_assigned({B})
        # A sample taken before the rebalance still names A: it is not exported.
        monitor.export({A: 3, B: 1})
        second = exported("unit-lag")
        await monitor.stop()
        return first, second, exported("unit-lag")

    assert asyncio.run(scenario()) == ({"0": 3, "1": 4}, {"1": 1}, {})


def test_holding_nothing_samples_nothing_without_connecting() -> None:
    monitor = LagMonitor(UNREACHABLE, service="unit-lag", group_id="g", holdings=Holdings())
    assert asyncio.run(monitor.sample()) == {}


def test_a_revoked_partition_leaves_the_gauge_before_the_next_sample() -> None:
    holdings = Holdings()
    monitor = LagMonitor(UNREACHABLE, service="unit-revoke", group_id="g", holdings=holdings)

    async def scenario() -> tuple[dict[str, float], dict[str, float]]:
        await holdings.on_partitions_assigned({A, B})
        monitor.export({A: 3, B: 4})
        before = exported("unit-revoke")
        await holdings.on_partitions_revoked({A})
        return before, exported("unit-revoke")

    assert asyncio.run(scenario()) == ({"0": 3, "1": 4}, {"1": 4})
