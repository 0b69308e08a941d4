"""Consumer lag as each consuming instance measures it, on the real broker."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from typing import cast

from aiokafka import TopicPartition
from fastapi.testclient import TestClient

from tests.kafkatools import produce_many
from tests.stack import Stack
from triage_classifier.app import subscribe as classifier_subscribe
from triage_classifier.batches import MicroBatchScorer
from triage_classifier.settings import Settings as ClassifierSettings
from triage_contracts import topics
from triage_router.app import create_app as router_app
from triage_router.settings import Settings as RouterSettings
from triage_runtime.kafka import ConsumedRecord, make_broker
from triage_runtime.lag import Holdings, LagMonitor
from triage_runtime.metrics import CONSUMER_LAG

PARTITIONS = {spec.name: spec.partitions for spec in topics.FIXED_SPECS}
"""The declared partitions, which the test's topics have (tests/stack.py makes them)."""
MESSAGES = 30


class StallingScorer:
    """Takes its first micro-batch (committed), then stalls on every later one until told."""

    def __init__(self) -> None:
        self.taken = 0
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()

    async def process(self, records: Sequence[ConsumedRecord], consumed: str) -> None:
        if self.taken == 0:
            self.taken = len(records)
            return
        self.stalled.set()
        await self.release.wait()

    async def process_when_due(self, records: Sequence[ConsumedRecord]) -> None:
        return None


def gauge(service: str) -> dict[int, float]:
    """This service label's ``triage_consumer_lag`` series, by partition."""
    return {
        int(sample.labels["partition"]): sample.value
        for metric in CONSUMER_LAG.collect()
        for sample in metric.samples
        if sample.labels["service"] == service
    }


async def wait_for(check: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def test_two_classifier_instances_lag_sums_to_the_groups_real_lag(isolated: Stack) -> None:
    settings = ClassifierSettings(
        kafka_bootstrap=isolated.kafka_bootstrap,
        topic_prefix=isolated.topic_prefix,
        group_id="it-lag-classifiers",
        batch_max_records=4,
        batch_timeout_ms=100,
    )
    topic = settings.topic(topics.DOCUMENTS)
    everything = {TopicPartition(topic, p) for p in range(PARTITIONS[topics.DOCUMENTS])}

    async def scenario() -> None:
        instances = []
        for name in ("classifier-a", "classifier-b"):
            broker = make_broker(settings, client_id=name)
            holdings = Holdings()
            scorer = StallingScorer()
            classifier_subscribe(
                broker, settings, cast(MicroBatchScorer, scorer), holdings=holdings
            )
            monitor = LagMonitor(
                settings,
                service=name,
                group_id=settings.group_id,
                holdings=holdings,
                label=lambda t: t.removeprefix(settings.topic_prefix),
            )
            instances.append((broker, holdings, scorer, monitor))
        (a_broker, a_held, a_scorer, a_lag), (b_broker, b_held, b_scorer, b_lag) = instances
        try:
            await a_broker.start()
            await wait_for(lambda: a_held.held == everything, "the first to hold all")
            await b_broker.start()
            await wait_for(
                lambda: a_held.held and b_held.held and a_held.held | b_held.held == everything,
                "the group to split the partitions",
            )
            assert not a_held.held & b_held.held
            partitions = await produce_many(
                isolated.kafka_bootstrap,
                topic,
                [(f"doc-{i}".encode(), b"{}") for i in range(MESSAGES)],
            )
            assert set(partitions) == set(range(PARTITIONS[topics.DOCUMENTS]))
            await asyncio.wait_for(a_scorer.stalled.wait(), 60)
            await asyncio.wait_for(b_scorer.stalled.wait(), 60)
            # What the group has really not committed: all but each instance's first batch.
            real = MESSAGES - a_scorer.taken - b_scorer.taken
            assert 0 < real < MESSAGES
            deadline = time.monotonic() + 30
            while True:
                a_lags, b_lags = await a_lag.sample(), await b_lag.sample()
                if sum(a_lags.values()) + sum(b_lags.values()) == real:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError((a_lags, b_lags, real))
                await asyncio.sleep(0.3)
            assert set(a_lags) == a_held.held
            assert set(b_lags) == b_held.held
            a_lag.export(a_lags)
            b_lag.export(b_lags)
            a_gauge, b_gauge = gauge("classifier-a"), gauge("classifier-b")
            assert set(a_gauge) == {tp.partition for tp in a_held.held}
            assert set(b_gauge) == {tp.partition for tp in b_held.held}
            assert sum(a_gauge.values()) + sum(b_gauge.values()) == real
            # An instance that stops holding partitions stops exporting them.
            a_lag.export({})
            assert gauge("classifier-a") == {}
        finally:
            for _broker, _held, scorer, _lag in instances:
                scorer.release.set()
            for broker, *_ in instances:
                await broker.stop()

    asyncio.run(scenario())


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
    partitions = [str(p) for p in range(PARTITIONS[topics.CLASSIFIED])]
    # Other routers in this process exported the same series: mark them, so only a value
    # this router's monitor measured can pass.
    for partition in partitions:
        CONSUMER_LAG.labels("router", topics.CLASSIFIED, partition).set(-1)
    with TestClient(router_app(settings)) as client:
        deadline = time.monotonic() + 20
        found: list[tuple[str, str]] = []
        while time.monotonic() < deadline:
            found = pattern.findall(client.get("/metrics").text)
            if len(found) == len(partitions) and all(float(value) >= 0 for _, value in found):
                break
            time.sleep(0.2)
    assert sorted(p for p, _ in found) == sorted(partitions)
    assert all(float(value) == 0 for _, value in found), found
