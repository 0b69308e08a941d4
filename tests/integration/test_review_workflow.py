"""The review workflow on real PostgreSQL and Kafka: claims, leases, decisions, the outbox."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import PRODUCER, RECEIVED_AT, Unpublished, classified, routed_item
from tests.kafkatools import collect
from tests.stack import Stack
from triage_contracts import DecidedBy, topics
from triage_review_ui.metrics import count_decision
from triage_runtime.db.engine import make_async_engine
from triage_runtime.kafka import make_broker
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.outbox import Outbox, Publisher
from triage_runtime.outcomes.review import (
    ClaimConflictError,
    DecisionTopics,
    ReviewWorkflow,
    WorkflowError,
)
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason, RouteTo, SendToReview

LABELS = ("billing", "legal", "other", "technical")


async def _open_items(database_url: str, count: int) -> list[int]:
    engine = make_async_engine(database_url)
    store = OutcomeStore(engine)
    for n in range(count):
        event = classified(sha256=f"{n:064x}", confidence=0.55, threshold=0.9)
        await store.open_review(
            event, SendToReview(ReviewReason.LOW_CONFIDENCE, 2, RECEIVED_AT + timedelta(hours=4))
        )
    await engine.dispose()
    sync = create_engine(database_url)
    with sync.connect() as conn:
        ids = [int(r[0]) for r in conn.execute(text("SELECT id FROM review_item ORDER BY id"))]
    sync.dispose()
    return ids


TOPICS = DecisionTopics(decisions="test.decisions", routed=lambda queue: f"test.routed.{queue}")


def _workflow(
    database_url: str,
    lease: float = 60.0,
    *,
    topics_: DecisionTopics = TOPICS,
    publisher: Publisher | None = None,
    other_queues: tuple[str, ...] = (),
) -> tuple[ReviewWorkflow, AsyncEngine]:
    engine = make_async_engine(database_url)
    flow = ReviewWorkflow(
        engine,
        labels=LABELS,
        other_queues=other_queues,
        lease=timedelta(seconds=lease),
        producer=PRODUCER,
        topics=topics_,
        publisher=publisher or Unpublished(),
        on_decided=count_decision,  # as the review UI counts them
    )
    return flow, engine


def _scalar(database_url: str, sql: str) -> object:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        value = conn.execute(text(sql)).scalar()
    engine.dispose()
    return value


def test_two_reviewers_claiming_at_once_exactly_one_wins(clean_db: str) -> None:
    async def scenario() -> list[tuple[bool, bool]]:
        ids = await _open_items(clean_db, 20)
        alice, alice_engine = _workflow(clean_db)
        bob, bob_engine = _workflow(clean_db)
        outcomes = []
        for item_id in ids:
            results = await asyncio.gather(
                alice.claim(item_id, reviewer="alice"),
                bob.claim(item_id, reviewer="bob"),
                return_exceptions=True,
            )
            for result in results:
                assert not isinstance(result, Exception) or isinstance(result, ClaimConflictError)
            outcomes.append(tuple(not isinstance(r, Exception) for r in results))
        await alice_engine.dispose()
        await bob_engine.dispose()
        return outcomes  # type: ignore[return-value]

    outcomes = asyncio.run(scenario())
    assert all(sum(pair) == 1 for pair in outcomes), outcomes
    assert _scalar(clean_db, "SELECT count(*) FROM review_item WHERE status = 'claimed'") == 20


def test_a_lease_expires_and_only_the_holder_may_decide(clean_db: str) -> None:
    async def scenario() -> None:
        [item] = await _open_items(clean_db, 1)
        # Leases of seconds, not fractions: on a loaded machine a round trip can take most of
        # a short lease, and the holder's claim would lapse before the test looks.
        flow, engine = _workflow(clean_db, lease=2.5)
        await flow.claim(item, reviewer="alice")
        with pytest.raises(ClaimConflictError, match="claimed by alice"):
            await flow.claim(item, reviewer="bob")
        with pytest.raises(ClaimConflictError, match="claimed by alice"):
            await flow.decide(item, reviewer="bob", label="billing")
        await asyncio.sleep(3.5)
        await flow.claim(item, reviewer="bob")  # the lease ran out, so bob may take it
        with pytest.raises(ClaimConflictError, match="claimed by bob"):
            await flow.decide(item, reviewer="alice", label="billing")  # her claim lapsed
        with pytest.raises(WorkflowError, match="not a queue"):
            await flow.decide(item, reviewer="bob", label="marketing")
        await flow.decide(item, reviewer="bob", label="legal", note="NDA, not an invoice")
        with pytest.raises(ClaimConflictError, match="already decided"):
            await flow.claim(item, reviewer="alice")
        await engine.dispose()

    asyncio.run(scenario())
    assert _scalar(clean_db, "SELECT decided_label FROM review_item") == "legal"
    assert _scalar(clean_db, "SELECT string_agg(action, ',' ORDER BY id) FROM audit_log") == (
        "claim,claim,decide"
    )


def test_a_decision_is_published_once_and_never_overwritten(isolated: Stack, clean_db: str) -> None:
    event = classified(sha256="f" * 64, confidence=0.55, threshold=0.9)

    async def scenario() -> tuple[int, int]:
        [item] = await _open_items(clean_db, 1)
        document_id = classified(sha256=f"{0:064x}").document_id
        broker = make_broker(
            KafkaConnection(kafka_bootstrap=isolated.kafka_bootstrap), client_id="test-review"
        )
        await broker.start()
        engine = make_async_engine(clean_db)
        outbox = Outbox(engine, broker, service="review-ui", topic_prefix=isolated.topic_prefix)
        flow, flow_engine = _workflow(
            clean_db,
            topics_=DecisionTopics(
                decisions=isolated.topic(topics.REVIEW_DECISIONS),
                routed=lambda q: isolated.topic(topics.routed_topic(q)),
            ),
            publisher=outbox,
        )
        await flow.claim(item, reviewer="alice")
        await flow.decide(item, reviewer="alice", label="technical")  # published at once
        again = await outbox.relay(grace=timedelta(0))  # nothing left for the relay
        # A later confident score for the same document (a replay, say) changes nothing.
        router = OutcomeStore(engine)
        rescored = event.model_copy(update={"document_id": document_id})
        billing = RouteTo("billing", DecidedBy.MODEL, 0.99)
        stored = await router.record_route(rescored, billing, routed=routed_item(rescored, billing))
        assert stored.queue == "technical" and not stored.created
        await broker.stop()
        await flow_engine.dispose()
        await engine.dispose()
        published = _scalar(clean_db, "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
        return int(str(published)), again

    published, again = asyncio.run(scenario())
    assert (published, again) == (2, 0)
    messages = asyncio.run(
        collect(
            isolated.kafka_bootstrap,
            pattern=isolated.topic_prefix.replace(".", r"\.") + r"triage\..*",
            until=lambda ms: len(ms) >= 2,
        )
    )
    by_schema = {m["value"]["schema_name"]: m for m in messages}
    decision = by_schema["ReviewDecision"]["value"]
    assert (decision["label"], decision["reviewer"]) == ("technical", "alice")
    assert decision["predicted_label"] == "billing"
    routed = by_schema["DocumentRouted"]
    assert routed["topic"] == isolated.topic("triage.routed.technical.v1")
    assert routed["value"]["decided_by"] == "human"
    assert _scalar(clean_db, "SELECT status FROM review_item") == "decided"


def test_bulk_decide_skips_items_others_hold(clean_db: str) -> None:
    async def scenario() -> tuple[list[int], dict[int, str], list[int]]:
        ids = await _open_items(clean_db, 5)
        flow, engine = _workflow(clean_db)
        await flow.claim(ids[2], reviewer="bob")
        result = await flow.bulk_decide(ids, reviewer="alice", label="other")
        await engine.dispose()
        return result.decided, result.skipped, ids

    decided, skipped, ids = asyncio.run(scenario())
    assert decided == [ids[0], ids[1], ids[3], ids[4]]
    assert list(skipped) == [ids[2]] and "bob" in skipped[ids[2]]


def test_decisions_become_training_examples(clean_db: str, tmp_path: Path) -> None:
    from triage_cli.training_data import review_decisions
    from triage_runtime.blobstore import LocalBlobStore

    blobs = LocalBlobStore(tmp_path / "blobs")
    text_of = "Our supplier contract renewal needs a signature before Friday."

    async def scenario() -> None:
        engine = make_async_engine(clean_db)
        event = classified(sha256=blobs.put(text_of.encode()), confidence=0.5, threshold=0.9)
        await OutcomeStore(engine).open_review(
            event, SendToReview(ReviewReason.LOW_CONFIDENCE, 2, RECEIVED_AT)
        )
        flow, flow_engine = _workflow(clean_db, lease=300.0)
        [item_id] = await _open_ids(clean_db)
        await flow.claim(item_id, reviewer="alice")
        await flow.decide(item_id, reviewer="alice", label="legal")
        await flow_engine.dispose()
        await engine.dispose()

    asyncio.run(scenario())
    [example] = review_decisions(clean_db, lambda: blobs)
    assert example.label == "legal"
    assert example.text == text_of


async def _open_ids(database_url: str) -> list[int]:
    sync = create_engine(database_url)
    with sync.connect() as conn:
        ids = [int(r[0]) for r in conn.execute(text("SELECT id FROM review_item ORDER BY id"))]
    sync.dispose()
    return ids


def test_each_decision_counts_as_agreed_or_overridden_for_the_model(clean_db: str) -> None:
    from prometheus_client import REGISTRY

    def count(outcome: str) -> float:
        labels = {"model_version": "tfidf-lr-test", "model_role": "champion", "outcome": outcome}
        return REGISTRY.get_sample_value("triage_review_decisions_total", labels) or 0.0

    before = (count("agreed"), count("overridden"))

    async def scenario() -> None:
        first, second, third = await _open_items(clean_db, 3)  # each predicted "billing"
        flow, engine = _workflow(clean_db)
        for item_id, label in ((first, "billing"), (second, "legal"), (third, "other")):
            await flow.claim(item_id, reviewer="alice")
            await flow.decide(item_id, reviewer="alice", label=label)
        with pytest.raises(ClaimConflictError):
            await flow.decide(first, reviewer="alice", label="legal")  # refused: not counted
        await engine.dispose()

    asyncio.run(scenario())
    assert (count("agreed") - before[0], count("overridden") - before[1]) == (1.0, 2.0)
