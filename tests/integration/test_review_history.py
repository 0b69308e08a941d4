"""Undo, reopen, escalation, comments and an item's history on real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import (
    PRODUCER,
    RECEIVED_AT,
    Unpublished,
    classified,
    review_login,
    routed_item,
    sql_rows,
)
from tests.kafkatools import collect
from tests.stack import Stack
from triage_contracts import DecidedBy, topics, utcnow
from triage_review_ui.app import create_app
from triage_review_ui.queries import QueueFilter, ReviewQueries
from triage_review_ui.settings import Settings
from triage_runtime.accounts.store import AuthStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.kafka import make_broker
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.outbox import Outbox, Publisher
from triage_runtime.outcomes.corrections import CorrectionStore, Outcome
from triage_runtime.outcomes.review import DecisionTopics, ReviewWorkflow, WorkflowError
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import (
    PRIORITY_HIGH,
    PRIORITY_NORMAL,
    ReviewReason,
    RouteTo,
    RoutingPolicy,
    SendToReview,
    decide,
)

LABELS = ("billing", "legal", "other", "technical")
TOPICS = DecisionTopics(decisions="test.decisions", routed=lambda queue: f"test.routed.{queue}")


async def _open_items(engine: AsyncEngine, count: int, *, due_in: float = 4.0) -> list[int]:
    store = OutcomeStore(engine)
    for n in range(count):
        event = classified(sha256=f"{n:064x}", confidence=0.55, threshold=0.9)
        await store.open_review(
            event,
            SendToReview(
                ReviewReason.LOW_CONFIDENCE,
                PRIORITY_NORMAL,
                RECEIVED_AT + timedelta(hours=due_in),
            ),
        )
    async with engine.connect() as conn:
        return [
            int(r[0]) for r in await conn.execute(text("SELECT id FROM review_item ORDER BY id"))
        ]


def _workflow(
    engine: AsyncEngine,
    *,
    undo_minutes: float = 10.0,
    topics_: DecisionTopics = TOPICS,
    publisher: Publisher | None = None,
) -> ReviewWorkflow:
    return ReviewWorkflow(
        engine,
        labels=LABELS,
        lease=timedelta(minutes=5),
        producer=PRODUCER,
        topics=topics_,
        publisher=publisher or Unpublished(),
        undo_window=timedelta(minutes=undo_minutes),
    )


def test_undo_retracts_the_decision_on_kafka_and_withdraws_its_routing(
    isolated: Stack, clean_db: str
) -> None:
    async def scenario() -> None:
        engine = make_async_engine(clean_db)
        [item] = await _open_items(engine, 1)
        broker = make_broker(
            KafkaConnection(kafka_bootstrap=isolated.kafka_bootstrap), client_id="test-undo"
        )
        await broker.start()
        outbox = Outbox(engine, broker, service="review-ui", topic_prefix=isolated.topic_prefix)
        flow = _workflow(
            engine,
            topics_=DecisionTopics(
                decisions=isolated.topic(topics.REVIEW_DECISIONS),
                routed=lambda q: isolated.topic(topics.routed_topic(q)),
            ),
            publisher=outbox,
        )
        await flow.claim(item, reviewer="alice")
        await flow.decide(item, reviewer="alice", label="technical", note="an outage report")
        await flow.undo(item, reviewer="alice")
        # The item is alice's again, to decide anew; the new decision replaces the routing.
        await flow.decide(item, reviewer="alice", label="legal")
        await broker.stop()
        await engine.dispose()

    asyncio.run(scenario())
    messages = asyncio.run(
        collect(
            isolated.kafka_bootstrap,
            pattern=isolated.topic_prefix.replace(".", r"\.") + r"triage\..*",
            until=lambda ms: len(ms) >= 6,
        )
    )
    schemas = [(m["topic"].removeprefix(isolated.topic_prefix), m["value"]) for m in messages]
    decisions = [v for t, v in schemas if v["schema_name"] == "ReviewDecision"]
    [retracted] = [v for t, v in schemas if v["schema_name"] == "ReviewDecisionRetracted"]
    [withdrawn] = [(t, v) for t, v in schemas if v["schema_name"] == "DocumentWithdrawn"]
    routed = {v["queue"]: v for t, v in schemas if v["schema_name"] == "DocumentRouted"}
    assert sorted(d["label"] for d in decisions) == ["legal", "technical"]
    first = next(d for d in decisions if d["label"] == "technical")
    assert retracted["retracted_event_id"] == first["event_id"]
    assert (retracted["label"], retracted["retraction"], retracted["actor"]) == (
        "technical",
        "undo",
        "alice",
    )
    assert withdrawn[0] == topics.routed_topic("technical")
    assert withdrawn[1]["withdrawn_event_id"] == routed["technical"]["event_id"]
    assert routed["legal"]["decided_by"] == "human"
    assert sql_rows(
        clean_db, "SELECT queue, decided_by, withdrawn_at IS NULL FROM routing_decision"
    ) == [("legal", "human", True)]
    assert sql_rows(clean_db, "SELECT kind, queue FROM document_outcome") == [("routed", "legal")]
    assert sql_rows(clean_db, "SELECT string_agg(action, ',' ORDER BY id) FROM audit_log") == [
        ("claim,decide,undo,decide",)
    ]
    assert sql_rows(clean_db, "SELECT kind, author, body FROM review_comment") == [
        ("note", "alice", "an outage report")
    ]


def test_only_the_author_undoes_within_the_window_and_an_admin_reopens(clean_db: str) -> None:
    async def scenario() -> None:
        engine = make_async_engine(clean_db)
        first, second = await _open_items(engine, 2)
        flow = _workflow(engine)
        for item in (first, second):
            await flow.claim(item, reviewer="alice")
            await flow.decide(item, reviewer="alice", label="billing")
        with pytest.raises(WorkflowError, match="only alice may undo"):
            await flow.undo(first, reviewer="bob")
        closed = _workflow(engine, undo_minutes=0)  # the window has passed
        with pytest.raises(WorkflowError, match="ask an admin to reopen"):
            await closed.undo(first, reviewer="alice")
        await flow.reopen(first, admin="root")
        with pytest.raises(WorkflowError, match="not decided"):
            await flow.reopen(first, admin="root")
        await engine.dispose()

    asyncio.run(scenario())
    assert sql_rows(
        clean_db, "SELECT status, claimed_by, decided_label FROM review_item ORDER BY id"
    ) == [
        ("pending", None, None),
        ("decided", "alice", "billing"),
    ]
    assert sql_rows(
        clean_db,
        "SELECT o.kind, o.queue FROM document_outcome o"
        " JOIN review_item i USING (document_id) ORDER BY i.id",
    ) == [("review", None), ("routed", "billing")]
    reopen = sql_rows(clean_db, "SELECT actor, detail::text FROM audit_log WHERE action = 'reopen'")
    assert [(a, json.loads(str(d))) for a, d in reopen] == [
        ("root", {"label": "billing", "decided_by": "alice"})
    ]
    schemas = sql_rows(clean_db, "SELECT schema FROM outbox ORDER BY id")
    assert schemas.count(("ReviewDecisionRetracted",)) == 1
    assert schemas.count(("DocumentWithdrawn",)) == 1


def test_two_undos_at_once_act_once(clean_db: str) -> None:
    races = 10

    async def scenario() -> list[int]:
        setup = make_async_engine(clean_db)
        ids = await _open_items(setup, races)
        flow = _workflow(setup)
        for item in ids:
            await flow.claim(item, reviewer="alice")
            await flow.decide(item, reviewer="alice", label="legal")
        engines = [make_async_engine(clean_db) for _ in range(2)]
        tabs = [_workflow(e) for e in engines]
        wins = []
        for item in ids:
            results = await asyncio.gather(
                *(tab.undo(item, reviewer="alice") for tab in tabs), return_exceptions=True
            )
            for result in results:
                assert result is None or isinstance(result, WorkflowError), result
            wins.append(sum(r is None for r in results))
        for engine in (setup, *engines):
            await engine.dispose()
        return wins

    wins = asyncio.run(scenario())
    assert wins == [1] * races
    assert sql_rows(clean_db, "SELECT count(*) FROM audit_log WHERE action = 'undo'") == [(races,)]
    assert sql_rows(
        clean_db, "SELECT count(*) FROM outbox WHERE schema = 'ReviewDecisionRetracted'"
    ) == [(races,)]
    assert sql_rows(clean_db, "SELECT count(*) FROM outbox WHERE schema = 'DocumentWithdrawn'") == [
        (races,)
    ]
    assert sql_rows(clean_db, "SELECT DISTINCT status, claimed_by FROM review_item") == [
        ("claimed", "alice")
    ]


def test_an_undone_decision_is_no_training_example_and_a_replay_may_route_it(
    clean_db: str,
) -> None:
    from triage_cli.training_data import review_decisions

    async def scenario() -> Outcome:
        engine = make_async_engine(clean_db)
        [item] = await _open_items(engine, 1)
        flow = _workflow(engine)
        await flow.claim(item, reviewer="alice")
        await flow.decide(item, reviewer="alice", label="legal")
        await flow.undo(item, reviewer="alice")
        # The human routing was withdrawn: the document is in review, not kept as human.
        replay = CorrectionStore(
            engine, producer=PRODUCER, review_sla=timedelta(hours=4), topic_for=str
        )
        event = classified(sha256=f"{0:064x}", confidence=0.99, threshold=0.9)
        change = await replay.apply(
            event, RouteTo("billing", DecidedBy.MODEL, 0.99), replay_id="r1", dry_run=True
        )
        await engine.dispose()
        return change.outcome

    assert asyncio.run(scenario()) is Outcome.CHANGED
    assert review_decisions(clean_db, lambda: None) == []


def test_escalating_raises_priority_is_filtered_counted_and_acts_once(clean_db: str) -> None:
    async def scenario() -> None:
        engine = make_async_engine(clean_db)
        first, second, third = await _open_items(engine, 3)
        engines = [make_async_engine(clean_db) for _ in range(2)]
        tabs = [_workflow(e) for e in engines]
        results = await asyncio.gather(
            *(
                t.escalate(first, actor=who, reason="customer chased twice")
                for t, who in zip(tabs, ("alice", "bob"), strict=True)
            ),
            return_exceptions=True,
        )
        assert sum(r is None for r in results) == 1, results
        flow = _workflow(engine)
        with pytest.raises(WorkflowError, match="say why"):
            await flow.escalate(second, actor="alice", reason="  ")
        await flow.claim(third, reviewer="alice")
        await flow.decide(third, reviewer="alice", label="other")
        with pytest.raises(WorkflowError, match="not open"):
            await flow.escalate(third, actor="alice", reason="late")
        queries = ReviewQueries(engine)
        page = await queries.open_queue(limit=10, flt=QueueFilter(escalated=True))
        assert [r.id for r in page.rows] == [first]
        assert page.rows[0].priority == PRIORITY_HIGH
        stats = await queries.dashboard(due_soon=timedelta(hours=2))
        # RECEIVED_AT is in the past, so both open items are overdue; none is due soon.
        assert (stats.open_items, stats.escalated, stats.overdue, stats.due_soon) == (2, 1, 2, 0)
        assert len(stats.decisions_per_hour) == 24
        assert sum(n for _, n in stats.decisions_per_hour) == 1
        for one in (engine, *engines):
            await one.dispose()

    asyncio.run(scenario())
    assert sql_rows(clean_db, "SELECT count(*) FROM audit_log WHERE action = 'escalate'") == [(1,)]


def test_history_shows_arrival_score_claims_decisions_notes_and_comments(clean_db: str) -> None:
    async def scenario() -> list[tuple[str, str | None, str, str | None]]:
        engine = make_async_engine(clean_db)
        [item] = await _open_items(engine, 1)
        flow = _workflow(engine)
        await flow.comment(item, author="bob", body="looks like the March invoice")
        await flow.claim(item, reviewer="alice")
        await flow.decide(item, reviewer="alice", label="billing", note="matched invoice 42")
        await flow.reopen(item, admin="root")
        with pytest.raises(WorkflowError, match="needs some text"):
            await flow.comment(item, author="bob", body=" ")
        queries = ReviewQueries(engine)
        found = await queries.item(item)
        assert found is not None
        history = await queries.history(found)
        audit, _ = await queries.audit()
        assert {r.row.action: r.text for r in audit}["decide"] == "matched invoice 42"
        await engine.dispose()
        return [(e.action, e.actor, e.detail, e.text) for e in history]

    history = asyncio.run(scenario())
    assert [h[0] for h in history] == ["arrived", "scored", "comment", "claim", "decide", "reopen"]
    assert history[0][2] == "arrived from upload:http-upload"
    assert history[1][2] == "scored billing by tfidf-lr-test (champion)"
    assert "0.55" not in " ".join(str(h) for h in history)  # never the confidence
    assert history[2][1:] == ("bob", "commented", "looks like the March invoice")
    assert history[4][1:] == ("alice", "decided billing", "matched invoice 42")
    assert history[5][1:3] == ("root", "reopen of billing (decided by alice)")


PASSWORD = "correct horse battery"


@pytest.fixture
def client(isolated: Stack, clean_db: str, tmp_path: Path) -> Iterator[TestClient]:
    """The review UI app with one open item, two reviewers and an admin."""

    async def seed() -> None:
        engine = make_async_engine(clean_db)
        auth = AuthStore(engine)
        for name, role in (("alice", "reviewer"), ("bob", "reviewer"), ("root", "admin")):
            await auth.create_user(name, PASSWORD, role)
        await _open_items(engine, 1)
        await engine.dispose()

    asyncio.run(seed())
    settings = Settings(
        database_url=clean_db,
        kafka_bootstrap=isolated.kafka_bootstrap,
        topic_prefix=isolated.topic_prefix,
        blob_dir=tmp_path / "blobs",
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _login(client: TestClient, user: str) -> str:
    return review_login(client, user, PASSWORD)


@pytest.mark.parametrize("action", ["undo", "reopen", "escalate", "comment"])
def test_each_history_action_refuses_a_missing_or_stale_csrf_token(
    client: TestClient, clean_db: str, action: str
) -> None:
    _login(client, "root")
    form = {"reason": "why", "body": "words"}
    for token in ({}, {"csrf": "stale"}):
        refused = client.post(f"/items/1/{action}", data=form | token)
        assert refused.status_code == 403, refused.text
        assert "CSRF" in refused.text
    changes = (
        "SELECT count(*) FROM audit_log WHERE action IN ('undo', 'reopen', 'escalate', 'comment')"
    )
    assert sql_rows(clean_db, changes) == [(0,)]


def test_a_reviewer_may_not_reopen_and_errors_are_pages(client: TestClient) -> None:
    csrf = _login(client, "alice")
    client.get("/items/1")  # claims it
    decided = client.post("/items/1/decide", data={"label": "legal", "csrf": csrf})
    assert decided.status_code == 200
    refused = client.post("/items/1/reopen", data={"csrf": csrf})
    assert refused.status_code == 403
    empty = client.post("/items/1/comment", data={"csrf": csrf, "body": "   "})
    assert empty.status_code == 422 and "needs some text" in empty.text
    assert "text/html" in empty.headers["content-type"]
    page = client.get("/items/1")
    assert "Undo my decision" in page.text and "Reopen for review" not in page.text


def test_undoing_a_quality_sample_decision_leaves_the_models_routing_as_it_was(
    clean_db: str,
) -> None:
    """Agreeing with a sample routed nothing, so its undo withdraws nothing; overruling one
    replaced the model's routing, so its undo withdraws the reviewer's and the document is
    in review again."""
    everything = RoutingPolicy(quality_sample=1.0)

    async def scenario() -> None:
        engine = make_async_engine(clean_db)
        batch = []
        for n in range(2):
            event = classified(sha256=f"{n + 500:064x}", label="billing", confidence=0.97)
            decision = decide(event, everything)
            assert isinstance(decision, RouteTo) and decision.quality_sample is not None
            batch.append((event, decision, routed_item(event, decision)))
        await OutcomeStore(engine).apply_batch(batch)
        async with engine.connect() as conn:
            agreed, overruled = [
                int(r[0])
                for r in await conn.execute(text("SELECT id FROM review_item ORDER BY id"))
            ]
        flow = _workflow(engine)
        for item, label in ((agreed, "billing"), (overruled, "legal")):
            await flow.claim(item, reviewer="alice")
            await flow.decide(item, reviewer="alice", label=label)
            await flow.undo(item, reviewer="alice")
        await engine.dispose()

    asyncio.run(scenario())
    assert sql_rows(
        clean_db,
        "SELECT i.status, r.queue, r.decided_by, r.withdrawn_at IS NULL, o.kind, o.queue"
        " FROM review_item i JOIN routing_decision r USING (document_id)"
        " JOIN document_outcome o USING (document_id) ORDER BY i.id",
    ) == [
        ("claimed", "billing", "model", True, "routed", "billing"),
        ("claimed", "legal", "human", False, "review", None),
    ]
    assert sql_rows(
        clean_db,
        "SELECT schema, topic FROM outbox WHERE schema IN"
        " ('ReviewDecisionRetracted', 'DocumentWithdrawn') ORDER BY id",
    ) == [
        ("ReviewDecisionRetracted", "test.decisions"),
        ("DocumentWithdrawn", "test.routed.billing"),  # the overruling withdrew the model's
        ("ReviewDecisionRetracted", "test.decisions"),
        ("DocumentWithdrawn", "test.routed.legal"),  # the undo withdraws the reviewer's
    ]


def test_an_undo_and_a_replay_of_one_document_at_once_both_finish(clean_db: str) -> None:
    """They lock the routing row, then the item, in the same order: one waits, none
    deadlocks; whichever goes first, the other sees what it did."""
    races = 10

    async def scenario() -> list[Outcome]:
        engine = make_async_engine(clean_db)
        ids = await _open_items(engine, races)
        flow = _workflow(engine)
        for item in ids:
            await flow.claim(item, reviewer="alice")
            await flow.decide(item, reviewer="alice", label="legal")
        other = make_async_engine(clean_db)
        replay = CorrectionStore(
            other, producer=PRODUCER, review_sla=timedelta(hours=4), topic_for=str
        )
        outcomes = []
        for n, item in enumerate(ids):
            event = classified(sha256=f"{n:064x}", confidence=0.99, threshold=0.9)
            route = RouteTo("billing", DecidedBy.MODEL, 0.99)
            _, change = await asyncio.gather(
                flow.undo(item, reviewer="alice"),
                replay.apply(event, route, replay_id=f"race{n}"),
            )
            outcomes.append(change.outcome)
        await other.dispose()
        await engine.dispose()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert set(outcomes) <= {Outcome.KEPT_HUMAN, Outcome.CHANGED}
    # Each document ends either routed by the replay (the undo went first: item closed) or
    # back in review with alice (the replay went first and kept the human decision).
    states = sql_rows(
        clean_db,
        "SELECT i.status, o.kind, o.queue FROM review_item i"
        " JOIN document_outcome o USING (document_id) ORDER BY i.id",
    )
    expected = {
        Outcome.CHANGED: ("closed", "routed", "billing"),
        Outcome.KEPT_HUMAN: ("claimed", "review", None),
    }
    assert states == [expected[o] for o in outcomes]


def test_deciding_a_quality_sample_while_a_replay_moves_it_both_finish(clean_db: str) -> None:
    """A decision locks the document's routing before its item, as a replay does: no
    deadlock; the replay either finds a human decision or closes the sample first."""
    races = 10
    everything = RoutingPolicy(quality_sample=1.0)

    async def scenario() -> list[tuple[bool, Outcome]]:
        engine = make_async_engine(clean_db)
        batch = []
        for n in range(races):
            event = classified(sha256=f"{n + 700:064x}", label="billing", confidence=0.97)
            decision = decide(event, everything)
            assert isinstance(decision, RouteTo)
            batch.append((event, decision, routed_item(event, decision)))
        await OutcomeStore(engine).apply_batch(batch)
        async with engine.connect() as conn:
            ids = [int(r[0]) for r in await conn.execute(text("SELECT id FROM review_item"))]
        flow = _workflow(engine)
        other = make_async_engine(clean_db)
        replay = CorrectionStore(
            other, producer=PRODUCER, review_sla=timedelta(hours=4), topic_for=str
        )
        results = []
        for (event, _, _), item in zip(batch, sorted(ids), strict=True):
            await flow.claim(item, reviewer="alice")
            decided, change = await asyncio.gather(
                flow.decide(item, reviewer="alice", label="legal"),
                replay.apply(event, RouteTo("technical", DecidedBy.MODEL, 0.99), replay_id="race"),
                return_exceptions=True,
            )
            assert decided is None or isinstance(decided, WorkflowError), decided
            assert not isinstance(change, BaseException), change
            results.append((decided is None, change.outcome))
        await other.dispose()
        await engine.dispose()
        return results

    results = asyncio.run(scenario())
    # Exactly one of them moved each document: the reviewer (the replay kept it) or the
    # replay (it closed the sample, so the decision was refused).
    assert all(r in {(True, Outcome.KEPT_HUMAN), (False, Outcome.CHANGED)} for r in results)


def test_retention_removes_notes_and_comments_with_their_item(
    clean_db: str, tmp_path: Path
) -> None:
    from triage_runtime.blobstore import LocalBlobStore
    from triage_runtime.retention import RetentionPolicy, run_retention

    async def scenario() -> int:
        engine = make_async_engine(clean_db)
        old, recent = await _open_items(engine, 2)
        flow = _workflow(engine)
        for item in (old, recent):
            await flow.comment(item, author="bob", body="a customer's name, say")
            await flow.claim(item, reviewer="alice")
            await flow.decide(item, reviewer="alice", label="other", note="their address")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE review_item SET decided_at = now() - interval '400 days' WHERE id = :i"
                ),
                {"i": old},
            )
        report = await run_retention(
            engine, LocalBlobStore(tmp_path), RetentionPolicy(review_days=365), now=utcnow()
        )
        await engine.dispose()
        return report.review_items

    assert asyncio.run(scenario()) == 1
    assert sql_rows(clean_db, "SELECT review_item_id, kind FROM review_comment ORDER BY id") == [
        (2, "comment"),
        (2, "note"),
    ]
    # The audit log stays (who did what, when); the words went with the item.
    assert sql_rows(clean_db, "SELECT count(*) FROM audit_log WHERE review_item_id = 1") == [(3,)]
