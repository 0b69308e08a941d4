"""The outbox (``triage_runtime.outbox``) against the real Kafka broker and PostgreSQL.

Tested: concurrent direct publishes and relays of several Outbox instances publish each event
exactly once; rows a writer committed and never published (a crash) wait out the grace, then
the relay publishes them in the order written per document, past one batch; a broker that
cannot publish makes ``publish`` return 0 without raising, leaving the rows to a working relay;
one relay pass at a time (the advisory lock, with and without ``wait``); ``measure`` and
``forget_published``; the events-produced metric counts topic families without the prefix;
a direct publish sends its documents' earlier pending events first, and more than a batch.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, NamedTuple

import pytest
from aiokafka import AIOKafkaConsumer
from faststream.exceptions import IncorrectState
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.helpers import PRODUCER, document_ref
from tests.stack import Stack
from triage_contracts import (
    DecidedBy,
    DocumentRoutedV1,
    DocumentWithdrawnV1,
    Event,
    ReviewDecisionV1,
    topics,
)
from triage_runtime import outbox
from triage_runtime.db.engine import make_async_engine
from triage_runtime.kafka import make_broker
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.outbox import BATCH, RELAY_LOCK, Outbox

NOW = timedelta(0)
PENDING = "SELECT count(*) FROM outbox WHERE published_at IS NULL"


class Record(NamedTuple):
    partition: int
    key: str
    event_id: str


def _doc() -> str:
    return f"doc_{uuid.uuid4().hex}"


def routed(document_id: str, queue: str = "billing") -> DocumentRoutedV1:
    return DocumentRoutedV1(
        producer=PRODUCER,
        document_id=document_id,
        queue=queue,
        decided_by=DecidedBy.MODEL,
        document=document_ref(),
    )


def withdrawn(of: DocumentRoutedV1) -> DocumentWithdrawnV1:
    return DocumentWithdrawnV1(
        producer=PRODUCER,
        document_id=of.document_id,
        queue=of.queue,
        withdrawn_event_id=of.event_id,
        reason="replay",
    )


def decision(document_id: str) -> ReviewDecisionV1:
    return ReviewDecisionV1(
        producer=PRODUCER, document_id=document_id, review_item_id=1, label="legal", reviewer="ana"
    )


def _event_id(value: bytes) -> str:
    return str(json.loads(value)["event_id"])


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def running(stack: Stack, service: str) -> AsyncIterator[tuple[Outbox, AsyncEngine]]:
    """An Outbox as a service runs one: its own engine and started broker."""
    engine = make_async_engine(stack.database_url)
    broker = make_broker(KafkaConnection(kafka_bootstrap=stack.kafka_bootstrap), client_id=service)
    await broker.start()
    try:
        yield Outbox(engine, broker, service=service, topic_prefix=stack.topic_prefix), engine
    finally:
        await broker.stop()
        await engine.dispose()


async def write(engine: AsyncEngine, items: Sequence[tuple[str, Event]]) -> list[uuid.UUID]:
    """Add (topic, event) pairs to the outbox in one committed transaction; never publish."""
    async with AsyncSession(engine) as session, session.begin():
        return await outbox.add(session, items)


async def scalar(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


async def age(engine: AsyncEngine, by: str, *event_ids: uuid.UUID) -> None:
    """Move rows' created_at and published_at back by an interval (every row if no ids)."""
    moved = ", ".join(f"{c} = {c} - CAST(:by AS interval)" for c in ("created_at", "published_at"))
    sql = f"UPDATE outbox SET {moved}" + (" WHERE event_id = ANY(:ids)" if event_ids else "")
    async with engine.begin() as conn:
        await conn.execute(text(sql), {"by": by, "ids": list(event_ids)})


async def read_all(bootstrap: str, names: Sequence[str]) -> list[Record]:
    """Every record on these topics up to their current end, in offset order per partition."""
    consumer = AIOKafkaConsumer(
        *names, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while {tp.topic for tp in consumer.assignment()} != set(names):
            assert time.monotonic() < deadline, f"not all of {names} exist"
            await asyncio.sleep(0.1)
        parts = sorted(consumer.assignment())
        end = await consumer.end_offsets(parts)
        out: list[Record] = []
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            assert time.monotonic() < deadline, "topics not read to their end within 30 s"
            for batch in (await consumer.getmany(*parts, timeout_ms=500)).values():
                out += [Record(r.partition, r.key.decode(), _event_id(r.value)) for r in batch]
        return out
    finally:
        await consumer.stop()


async def test_concurrent_direct_publishes_and_relays_publish_each_event_exactly_once(
    isolated: Stack, clean_db: str
) -> None:
    billing = isolated.topic(topics.routed_topic("billing"))
    reviews = isolated.topic(topics.REVIEW_DECISIONS)
    async with (
        running(isolated, "test-outbox-a") as (a, engine),
        running(isolated, "test-outbox-b") as (b, _),
        running(isolated, "test-outbox-c") as (c, _),
    ):
        ids: list[uuid.UUID] = []
        for _ in range(4):
            half = [(billing, routed(_doc())) for _ in range(25)]
            ids += await write(engine, half + [(reviews, decision(_doc())) for _ in range(25)])
        counts = await asyncio.gather(
            a.publish(ids[:120]),
            b.publish(ids[80:]),
            c.publish(ids[::3]),
            a.publish(ids[50:150]),
            a.relay(grace=NOW),
            b.relay(grace=NOW),
            c.relay(grace=NOW, wait=True),
        )
        assert sum(counts) == 200, f"publishers claimed {counts}"
        assert await scalar(engine, PENDING) == 0
        assert await scalar(engine, "SELECT count(*) FROM outbox") == 200
    got = Counter(r.event_id for r in await read_all(isolated.kafka_bootstrap, [billing, reviews]))
    assert [e for e, n in got.items() if n > 1] == [], "published more than once"
    assert set(got) == {str(i) for i in ids}


async def test_the_relay_publishes_what_a_crashed_writer_left_after_the_grace_in_order(
    isolated: Stack, clean_db: str
) -> None:
    billing = isolated.topic(topics.routed_topic("billing"))
    reviews = isolated.topic(topics.REVIEW_DECISIONS)
    docs = [_doc() for _ in range(3)]
    written: dict[str, list[str]] = defaultdict(list)
    async with running(isolated, "test-outbox-relay") as (box, engine):
        filler = await write(engine, [(reviews, decision(_doc())) for _ in range(BATCH + 20)])
        await age(engine, "1 minute")
        for _ in range(3):  # interleaved transactions; each routes a document, then withdraws it
            for doc in docs:
                first = routed(doc)
                ids = await write(engine, [(billing, first), (billing, withdrawn(first))])
                written[doc] += [str(i) for i in ids]
        # Nobody called publish (the writer "crashed"). The default grace publishes only the
        # rows older than it, past one batch; the ones just written are left to their writer.
        assert await box.relay() == len(filler)
        assert await scalar(engine, PENDING) == 18
        assert await box.relay(grace=NOW) == 18
        assert await scalar(engine, PENDING) == 0
    on_billing = await read_all(isolated.kafka_bootstrap, [billing])
    for doc in docs:
        mine = [r for r in on_billing if r.key == doc]
        assert len({r.partition for r in mine}) == 1
        assert [r.event_id for r in mine] == written[doc], "not in the order written"
    on_reviews = await read_all(isolated.kafka_bootstrap, [reviews])
    assert sorted(r.event_id for r in on_reviews) == sorted(str(i) for i in filler)


async def test_a_broker_that_cannot_publish_leaves_the_rows_to_a_working_relay(
    isolated: Stack, clean_db: str
) -> None:
    reviews = isolated.topic(topics.REVIEW_DECISIONS)
    service = "test-outbox-dead"
    failures = _sample("triage_outbox_publish_failures_total", service=service, path="direct")
    async with running(isolated, "test-outbox-live") as (live, engine):
        # Never connected (its Kafka is a closed port): every publish fails at once.
        dead = Outbox(
            engine,
            make_broker(KafkaConnection(kafka_bootstrap="127.0.0.1:1"), client_id=service),
            service=service,
        )
        ids = await write(engine, [(reviews, decision(_doc())) for _ in range(5)])
        started = time.monotonic()
        assert await dead.publish(ids) == 0
        assert time.monotonic() - started < 5
        after = _sample("triage_outbox_publish_failures_total", service=service, path="direct")
        assert after == failures + 1
        with pytest.raises(IncorrectState):
            await dead.relay(grace=NOW)
        assert await scalar(engine, PENDING) == 5
        assert await live.relay(grace=NOW) == 5
        assert await scalar(engine, PENDING) == 0
    got = await read_all(isolated.kafka_bootstrap, [reviews])
    assert sorted(r.event_id for r in got) == sorted(str(i) for i in ids)


async def test_one_relay_pass_at_a_time(isolated: Stack, clean_db: str) -> None:
    reviews = isolated.topic(topics.REVIEW_DECISIONS)
    async with running(isolated, "test-outbox-lock") as (box, engine):
        await write(engine, [(reviews, decision(_doc()))])
        async with engine.begin() as other_pass:  # another relay's pass holds the lock
            await other_pass.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": RELAY_LOCK})
            started = time.monotonic()
            assert await box.relay(grace=NOW) == 0
            assert time.monotonic() - started < 2, "a relay without wait waited"
            waiting = asyncio.create_task(box.relay(grace=NOW, wait=True))
            await asyncio.sleep(1)
            assert not waiting.done(), "a relay with wait ran during another pass"
            assert await scalar(engine, PENDING) == 1
        assert await asyncio.wait_for(waiting, 30) == 1
        assert await scalar(engine, PENDING) == 0


async def test_measure_and_forget_published(isolated: Stack, clean_db: str) -> None:
    reviews = isolated.topic(topics.REVIEW_DECISIONS)
    service = "test-outbox-measure"
    async with running(isolated, service) as (box, engine):
        assert await box.measure() == (0, 0.0)
        ids = await write(engine, [(reviews, decision(_doc())) for _ in range(3)])
        await age(engine, "90 seconds", ids[1])
        pending, oldest = await box.measure()
        assert pending == 3 and 90 <= oldest < 150
        assert _sample("triage_outbox_pending", service=service) == 3
        assert _sample("triage_outbox_oldest_pending_seconds", service=service) == oldest
        assert await box.publish(ids) == 3
        assert await box.measure() == (0, 0.0)
        assert _sample("triage_outbox_oldest_pending_seconds", service=service) == 0

        [waiting] = await write(engine, [(reviews, decision(_doc()))])  # pending: never deleted
        await age(engine, "2 hours", ids[0])
        await age(engine, "30 minutes", ids[1])
        await age(engine, "3 hours", waiting)
        assert await box.forget_published(older_than=timedelta(hours=1)) == 1
        left = "SELECT array_agg(event_id ORDER BY id) FROM outbox"
        assert await scalar(engine, left) == [ids[1], ids[2], waiting]
        assert await box.forget_published(older_than=NOW) == 2
        assert await scalar(engine, left) == [waiting]


async def test_events_produced_are_counted_by_topic_family_without_the_prefix(
    isolated: Stack, clean_db: str
) -> None:
    service = "test-outbox-metrics"
    produced = "triage_events_produced_total"
    items: list[tuple[str, Event]] = [
        (isolated.topic(topics.routed_topic("billing")), routed(_doc())),
        (isolated.topic(topics.routed_topic("legal")), routed(_doc(), "legal")),
        (isolated.topic(topics.REVIEW_DECISIONS), decision(_doc())),
    ]
    families = ("triage.routed.*", topics.REVIEW_DECISIONS)
    before = {f: _sample(produced, service=service, topic=f) for f in families}
    direct = _sample("triage_outbox_published_total", service=service, path="direct")
    async with running(isolated, service) as (box, engine):
        assert await box.publish(await write(engine, items)) == 3
    assert _sample(produced, service=service, topic="triage.routed.*") == before[families[0]] + 2
    assert _sample(produced, service=service, topic=families[1]) == before[families[1]] + 1
    for topic, _ in items:
        assert REGISTRY.get_sample_value(produced, {"service": service, "topic": topic}) is None
    assert _sample("triage_outbox_published_total", service=service, path="direct") == direct + 3


async def test_a_direct_publish_sends_its_documents_earlier_pending_events_first(
    isolated: Stack, clean_db: str
) -> None:
    billing = isolated.topic(topics.routed_topic("billing"))
    doc = _doc()
    async with running(isolated, "test-outbox-order") as (live, engine):
        dead = Outbox(
            engine,
            make_broker(KafkaConnection(kafka_bootstrap="127.0.0.1:1"), client_id="dead"),
            service="dead",
        )
        first = routed(doc)
        earlier = await write(engine, [(billing, first)])
        assert await dead.publish(earlier) == 0  # the router's publish failed: still pending
        later = await write(engine, [(billing, withdrawn(first))])  # a replay, soon after
        assert await live.publish(later) == 2
        assert await scalar(engine, PENDING) == 0
    on_billing = [r.event_id for r in await read_all(isolated.kafka_bootstrap, [billing])]
    assert on_billing == [str(earlier[0]), str(later[0])], "withdrawn before it was routed"


async def test_a_direct_publish_of_more_than_a_batch_publishes_every_event(
    isolated: Stack, clean_db: str
) -> None:
    reviews = isolated.topic(topics.REVIEW_DECISIONS)
    async with running(isolated, "test-outbox-many") as (box, engine):
        ids = await write(engine, [(reviews, decision(_doc())) for _ in range(BATCH + 20)])
        assert await box.publish(ids) == BATCH + 20
        assert await scalar(engine, PENDING) == 0
