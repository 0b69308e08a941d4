"""Replay corrections on real PostgreSQL: every transition, human decisions, idempotence."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from tests.helpers import PRODUCER, Unpublished, classified, routed_item
from triage_contracts import DecidedBy, Event
from triage_runtime.db.engine import make_async_engine
from triage_runtime.db.models import OutboxRow
from triage_runtime.outbox import event_of
from triage_runtime.outcomes.corrections import CorrectionStore, Outcome
from triage_runtime.outcomes.review import DecisionTopics, ReviewWorkflow
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason, RouteTo, RoutingPolicy, SendToReview, decide

SLA = timedelta(hours=4)
POLICY = RoutingPolicy(review_sla_hours=4)


def _outbox(url: str) -> list[tuple[str, Event]]:
    """Every (topic, event) in the outbox, in the order written."""
    engine = create_engine(url)
    with Session(engine) as session:
        rows = session.scalars(select(OutboxRow).order_by(OutboxRow.id)).all()
        found = [(row.topic, event_of(row)) for row in rows]
    engine.dispose()
    return found


def _store(engine: AsyncEngine) -> CorrectionStore:
    return CorrectionStore(
        engine, producer=PRODUCER, review_sla=SLA, topic_for=lambda q: f"routed.{q}"
    )


def _one(url: str, sql: str) -> Any:
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(text(sql)).first()
    engine.dispose()
    return row


def test_a_document_moves_queue_to_review_to_queue_and_each_move_is_announced(
    clean_db: str,
) -> None:
    async def scenario() -> None:
        engine = make_async_engine(clean_db)
        router = OutcomeStore(engine)
        store = _store(engine)

        original = classified(label="billing", confidence=0.97, sha256="b1" * 32)
        billing = RouteTo("billing", DecidedBy.MODEL, 0.97)
        stored = await router.record_route(
            original, billing, routed=routed_item(original, billing, topic="routed.billing")
        )

        # Re-scored as legal: withdrawn from billing, routed to legal.
        legal = classified(label="legal", confidence=0.95, sha256="b1" * 32, model_version="v2")
        change = await store.apply(legal, decide(legal, POLICY), replay_id="r1")
        assert (change.outcome, change.old, change.new) == (Outcome.CHANGED, "billing", "legal")
        _, (t1, withdrawn), (t2, routed) = sent = _outbox(clean_db)
        assert (t1, t2) == ("routed.billing", "routed.legal")
        assert change.event_ids == (withdrawn.event_id, routed.event_id)
        assert withdrawn.withdrawn_event_id == stored.event_id  # type: ignore[attr-defined]
        assert routed.supersedes_event_id == stored.event_id  # type: ignore[attr-defined]

        # The same score again: nothing changes, nothing is announced.
        again = await store.apply(legal, decide(legal, POLICY), replay_id="r2")
        assert again.outcome is Outcome.UNCHANGED and again.event_ids == ()
        assert len(_outbox(clean_db)) == len(sent)

        # Re-scored unsure: withdrawn from legal, a review item opened.
        unsure = classified(label="legal", confidence=0.5, sha256="b1" * 32, model_version="v3")
        dry = await store.apply(unsure, decide(unsure, POLICY), replay_id="r3", dry_run=True)
        assert dry.outcome is Outcome.CHANGED
        assert _one(clean_db, "SELECT count(*) FROM review_item")[0] == 0, "a dry run changed data"
        assert len(_outbox(clean_db)) == len(sent), "a dry run wrote events"
        change = await store.apply(unsure, decide(unsure, POLICY), replay_id="r3")
        assert (change.old, change.new) == ("legal", "review")
        topic, withdrawn_legal = _outbox(clean_db)[-1]
        assert topic == "routed.legal"
        assert withdrawn_legal.withdrawn_event_id == routed.event_id  # type: ignore[attr-defined]

        # A redelivery of the original score must not put it back in billing.
        redelivered = await router.record_route(
            original, billing, routed=routed_item(original, billing)
        )
        assert not redelivered.created and redelivered.event_id == routed.event_id

        # Confident again: the review item is closed and the document routed.
        sure = classified(label="legal", confidence=0.99, sha256="b1" * 32, model_version="v4")
        change = await store.apply(sure, decide(sure, POLICY), replay_id="r4")
        assert (change.old, change.new) == ("review", "legal")
        await engine.dispose()

    asyncio.run(scenario())
    status, note = _one(clean_db, "SELECT status, note FROM review_item")
    assert status == "closed" and "replay r4" in note
    queue, withdrawn_at = _one(clean_db, "SELECT queue, withdrawn_at FROM routing_decision")
    assert (queue, withdrawn_at) == ("legal", None)


def test_review_items_are_updated_in_place_and_human_decisions_are_never_touched(
    clean_db: str,
) -> None:
    async def scenario() -> None:
        engine = make_async_engine(clean_db)
        router = OutcomeStore(engine)
        store = _store(engine)
        first = classified(label="billing", confidence=0.5, sha256="c1" * 32)
        second = classified(label="legal", confidence=0.6, sha256="c2" * 32)
        for event in (first, second):
            decision = decide(event, POLICY)
            assert isinstance(decision, SendToReview)
            assert await router.open_review(event, decision)

        rescored = classified(
            label="technical", confidence=0.55, sha256="c1" * 32, model_version="v2"
        )
        change = await store.apply(rescored, decide(rescored, POLICY), replay_id="r1")
        assert change.outcome is Outcome.REVIEW_UPDATED
        again = await store.apply(rescored, decide(rescored, POLICY), replay_id="r2")
        assert again.outcome is Outcome.UNCHANGED
        # bfloat16 scores move in the last digits with the batch: not a change ...
        jitter = classified(
            label="technical", confidence=0.553, sha256="c1" * 32, model_version="v2"
        )
        same = await store.apply(jitter, decide(jitter, POLICY), replay_id="r2b")
        assert same.outcome is Outcome.UNCHANGED
        # ... but a score that moved is.
        moved = classified(label="technical", confidence=0.57, sha256="c1" * 32, model_version="v2")
        updated = await store.apply(moved, decide(moved, POLICY), replay_id="r2c")
        assert updated.outcome is Outcome.REVIEW_UPDATED

        flow = ReviewWorkflow(
            engine,
            labels=["billing", "legal", "technical"],
            lease=SLA,
            producer=PRODUCER,
            topics=DecisionTopics(decisions="decisions", routed=lambda q: f"routed.{q}"),
            publisher=Unpublished(),
        )
        (item_id,) = _one(clean_db, f"SELECT id FROM review_item WHERE blob_sha256 = '{'c2' * 32}'")
        await flow.claim(item_id, reviewer="alice")
        await flow.decide(item_id, reviewer="alice", label="legal")
        confident = classified(
            label="billing", confidence=0.99, sha256="c2" * 32, model_version="v2"
        )
        kept = await store.apply(confident, decide(confident, POLICY), replay_id="r3")
        assert kept.outcome is Outcome.KEPT_HUMAN and kept.old == kept.new == "legal"
        await engine.dispose()

    asyncio.run(scenario())
    reason, label, version = _one(
        clean_db,
        "SELECT reason, predicted_label, model_version FROM review_item"
        f" WHERE blob_sha256 = '{'c1' * 32}'",
    )
    assert (reason, label, version) == (ReviewReason.LOW_CONFIDENCE.value, "technical", "v2")
    decided = _one(
        clean_db,
        f"SELECT status, decided_label FROM review_item WHERE blob_sha256 = '{'c2' * 32}'",
    )
    assert tuple(decided) == ("decided", "legal")
    assert _one(clean_db, "SELECT count(*) FROM routing_correction")[0] == 0


def test_a_batch_applies_as_one_document_at_a_time_would_even_with_a_document_twice(
    clean_db: str,
) -> None:
    """apply_many locks and reads a batch's rows in two statements when every document is
    in it once, and goes one by one when one repeats; either way, the outcomes and rows are
    those of applying each score by itself."""

    async def scenario(prefix: str, batched: bool) -> list[tuple[Outcome, str, str]]:
        engine = make_async_engine(clean_db)
        router = OutcomeStore(engine)
        store = _store(engine)
        sha = [f"{prefix}{n}" * 32 for n in "1234"]
        for queue, digest in (("billing", sha[0]), ("legal", sha[1])):
            seeded = classified(label=queue, confidence=0.97, sha256=digest)
            route = RouteTo(queue, DecidedBy.MODEL, 0.97)
            await router.record_route(seeded, route, routed=routed_item(seeded, route))
        unsure = classified(label="legal", confidence=0.5, sha256=sha[2])
        decision = decide(unsure, POLICY)
        assert isinstance(decision, SendToReview)
        await router.open_review(unsure, decision)

        def rescored(n: int, label: str, confidence: float) -> Any:
            event = classified(
                label=label, confidence=confidence, sha256=sha[n], model_version="v2"
            )
            return event, decide(event, POLICY)

        distinct = [
            rescored(0, "legal", 0.95),  # billing -> legal
            rescored(1, "legal", 0.96),  # unchanged
            rescored(2, "technical", 0.99),  # review -> technical
            rescored(3, "billing", 0.99),  # never routed
        ]
        repeated = [
            rescored(0, "legal", 0.5),
            rescored(0, "legal", 0.99),
        ]  # legal -> review -> legal
        changes = []
        for batch in (distinct, repeated):
            if batched:
                changes += await store.apply_many(batch, replay_id=f"r-{prefix}")
            else:
                for event, decision in batch:
                    changes.append(await store.apply(event, decision, replay_id=f"r-{prefix}"))
        await engine.dispose()
        return [(c.outcome, c.old, c.new) for c in changes]

    one_by_one = asyncio.run(scenario("a", batched=False))
    batched = asyncio.run(scenario("b", batched=True))
    assert (
        batched
        == one_by_one
        == [
            (Outcome.CHANGED, "billing", "legal"),
            (Outcome.UNCHANGED, "legal", "legal"),
            (Outcome.CHANGED, "review", "technical"),
            (Outcome.NOT_YET_ROUTED, "-", "billing"),
            (Outcome.CHANGED, "legal", "review"),
            (Outcome.CHANGED, "review", "legal"),
        ]
    )

    def rows(prefix: str) -> list[Any]:
        """Each document's routing (queue, live) and review item status, then the
        number of corrections recorded."""
        engine = create_engine(clean_db)
        with engine.connect() as conn:
            found = [
                conn.execute(
                    text(
                        "SELECT (SELECT queue FROM routing_decision WHERE document_id = :d),"
                        " (SELECT withdrawn_at IS NULL FROM routing_decision"
                        "  WHERE document_id = :d),"
                        " (SELECT status FROM review_item WHERE document_id = :d)"
                    ),
                    {"d": classified(sha256=f"{prefix}{n}" * 32).document_id},
                ).one()
                for n in "1234"
            ]
            corrections = conn.execute(
                text("SELECT count(*) FROM routing_correction WHERE replay_id = :r"),
                {"r": f"r-{prefix}"},
            ).scalar_one()
        engine.dispose()
        return [tuple(row) for row in found] + [corrections]

    assert (
        rows("a")
        == rows("b")
        == [
            ("legal", True, "closed"),  # legal -> review -> legal: its item closed
            ("legal", True, None),
            ("technical", True, "closed"),
            (None, None, None),
            4,
        ]
    )
