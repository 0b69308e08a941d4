"""Blind quality samples on real PostgreSQL and Kafka: drawn by the router with its routing,
stored once under concurrency, decided in the review UI like any item, measured as live
precision in the review UI's metrics."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from tests.helpers import PRODUCER, classified, review_login, routed_item, sql_rows
from tests.kafkatools import collect, produce_many
from tests.stack import Stack, review_workflow
from triage_cli.main import app as cli
from triage_contracts import DocumentClassifiedV1, topics
from triage_contracts.intervals import wilson_interval
from triage_review_ui.app import create_app as review_app
from triage_review_ui.settings import Settings as ReviewSettings
from triage_router.app import create_app as router_app
from triage_router.settings import Settings as RouterSettings
from triage_runtime.accounts.store import AuthStore
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.kafka import encode_event, make_broker
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.outbox import Outbox
from triage_runtime.outcomes.corrections import CorrectionStore
from triage_runtime.outcomes.quality import QualitySamples
from triage_runtime.outcomes.review import ReviewWorkflow
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import RouteTo, RoutingPolicy, decide

PASSWORD = "correct horse battery"
LABELS = ("billing", "legal", "other", "technical")
HALF = RoutingPolicy(version=1, quality_sample=0.5)


def _event(n: int, *, label: str = "billing", confidence: float = 0.97) -> DocumentClassifiedV1:
    event = classified(sha256=f"{n:064x}", label=label, confidence=confidence, threshold=0.9)
    return event.model_copy(update={"policy_version": 1})


def _sampled_and_not(policy: RoutingPolicy) -> tuple[int, int]:
    """The first n whose document is in the policy's quality sample, and the first that is not."""
    inside = next(n for n in range(100) if policy.in_quality_sample(_event(n).document_id))
    outside = next(n for n in range(100) if not policy.in_quality_sample(_event(n).document_id))
    return inside, outside


def test_the_same_batch_applied_at_once_routes_once_and_samples_once(clean_db: str) -> None:
    events = [_event(n) for n in range(30)]
    decided = [(event, decide(event, HALF)) for event in events]
    sampled = {e.document_id for e in events if HALF.in_quality_sample(e.document_id)}
    assert 5 < len(sampled) < 25  # the test means something only if both kinds are there

    async def scenario() -> None:
        engines = [make_async_engine(clean_db) for _ in range(4)]
        stores = [OutcomeStore(engine) for engine in engines]
        batch = [
            (
                event,
                decision,
                routed_item(event, decision) if isinstance(decision, RouteTo) else None,
            )
            for event, decision in decided
        ]
        # Four routers given the same classified batch at once (a rebalance, a redelivery).
        await asyncio.gather(*(store.apply_batch(batch) for store in stores))
        await stores[0].apply_batch(batch)  # and once more, later
        for engine in engines:
            await engine.dispose()

    asyncio.run(scenario())
    routings = sql_rows(clean_db, "SELECT document_id, queue, decided_by FROM routing_decision")
    assert sorted(r[0] for r in routings) == sorted(e.document_id for e in events)
    assert {(r[1], r[2]) for r in routings} == {("billing", "model")}
    assert sql_rows(clean_db, "SELECT count(*) FROM outbox")[0][0] == 30  # one DocumentRouted each
    items = sql_rows(
        clean_db,
        "SELECT document_id, reason, status, predicted_label, confidence, model_version,"
        " priority FROM review_item",
    )
    assert {r[0] for r in items} == sampled and len(items) == len(sampled)
    assert {r[1:] for r in items} == {
        ("quality_sample", "pending", "billing", 0.97, "tfidf-lr-test", 2)
    }
    outcomes = sql_rows(clean_db, "SELECT DISTINCT kind, queue, decided_by FROM document_outcome")
    assert outcomes == [("routed", "billing", "model")]


def _workflow(database_url: str, isolated: Stack) -> tuple[ReviewWorkflow, Any, Any]:
    """A review workflow publishing to the isolated topics; its broker and engine."""
    engine = make_async_engine(database_url)
    broker = make_broker(
        KafkaConnection(kafka_bootstrap=isolated.kafka_bootstrap), client_id="test-quality"
    )
    outbox = Outbox(engine, broker, service="review-ui", topic_prefix=isolated.topic_prefix)
    flow = review_workflow(engine, isolated, LABELS, outbox)
    return flow, broker, engine


def test_agreeing_moves_nothing_and_overruling_withdraws_and_supersedes_the_routing(
    isolated: Stack, clean_db: str
) -> None:
    first, _ = _sampled_and_not(HALF)
    second = next(
        n
        for n in range(first + 1, 200)
        if HALF.in_quality_sample(_event(n, label="legal").document_id)
    )
    agreed, overruled = _event(first), _event(second, label="legal")

    async def scenario() -> None:
        engine = make_async_engine(clean_db)
        store = OutcomeStore(engine)
        for event in (agreed, overruled):
            decision = decide(event, HALF)
            assert isinstance(decision, RouteTo) and decision.quality_sample is not None
            # On the queue's topic, as a router stores it (the broker makes no other topic).
            topic = isolated.topic(topics.routed_topic(decision.queue))
            await store.record_route(
                event, decision, routed=routed_item(event, decision, topic=topic)
            )
        flow, broker, flow_engine = _workflow(clean_db, isolated)
        await broker.start()
        ids = dict(sql_rows(clean_db, "SELECT document_id, id FROM review_item"))
        for event, label in ((agreed, "billing"), (overruled, "technical")):
            await flow.claim(ids[event.document_id], reviewer="alice")
            await flow.decide(ids[event.document_id], reviewer="alice", label=label)
        await broker.stop()
        await flow_engine.dispose()
        await engine.dispose()

    asyncio.run(scenario())
    routing = {
        r[0]: r[1:]
        for r in sql_rows(
            clean_db, "SELECT document_id, queue, decided_by, event_id FROM routing_decision"
        )
    }
    assert routing[agreed.document_id][:2] == ("billing", "model")  # left as routed
    assert routing[overruled.document_id][:2] == ("technical", "human")
    outcome = {
        r[0]: r[1:]
        for r in sql_rows(clean_db, "SELECT document_id, queue, decided_by FROM document_outcome")
    }
    assert outcome == {
        agreed.document_id: ("billing", "model"),
        overruled.document_id: ("technical", "human"),
    }
    decided = sql_rows(
        clean_db, "SELECT reason, predicted_label, decided_label FROM review_item ORDER BY id"
    )
    assert decided == [
        ("quality_sample", "billing", "billing"),
        ("quality_sample", "legal", "technical"),
    ]
    messages = asyncio.run(
        collect(
            isolated.kafka_bootstrap,
            pattern=re.escape(isolated.topic_prefix) + r"triage\.(routed\..*|review\..*)",
            until=lambda ms: len(ms) >= 6,
        )
    )
    kinds = sorted(
        (m["value"]["schema_name"], m["value"]["document_id"] == agreed.document_id)
        for m in messages
    )
    # The model's two routes (still pending, published first with each document's decision).
    # Agreeing: a ReviewDecision only. Overruling: the decision, the withdrawal, the new route.
    assert kinds == [
        ("DocumentRouted", False),
        ("DocumentRouted", False),
        ("DocumentRouted", True),
        ("DocumentWithdrawn", False),
        ("ReviewDecision", False),
        ("ReviewDecision", True),
    ]
    [withdrawn] = [m for m in messages if m["value"]["schema_name"] == "DocumentWithdrawn"]
    [rerouted] = [
        m
        for m in messages
        if m["value"]["schema_name"] == "DocumentRouted" and m["value"]["decided_by"] == "human"
    ]
    assert withdrawn["topic"] == isolated.topic("triage.routed.legal.v1")
    assert rerouted["topic"] == isolated.topic("triage.routed.technical.v1")
    assert rerouted["value"]["decided_by"] == "human"
    assert rerouted["value"]["supersedes_event_id"] == withdrawn["value"]["withdrawn_event_id"]
    # The routing row now names the human's DocumentRouted, not the withdrawn one.
    assert rerouted["value"]["event_id"] == str(routing[overruled.document_id][2])
    assert withdrawn["value"]["withdrawn_event_id"] != rerouted["value"]["event_id"]


def test_a_replay_that_withdraws_a_sampled_routing_makes_the_sample_an_ordinary_item(
    clean_db: str,
) -> None:
    inside, _ = _sampled_and_not(HALF)
    event = _event(inside)

    async def scenario() -> None:
        engine = make_async_engine(clean_db)
        decision = decide(event, HALF)
        assert isinstance(decision, RouteTo)
        await OutcomeStore(engine).record_route(
            event, decision, routed=routed_item(event, decision)
        )
        unsure = event.model_copy(
            update={"prediction": _event(inside, confidence=0.6).prediction, "model": event.model}
        )
        corrections = CorrectionStore(
            engine, producer=PRODUCER, review_sla=timedelta(hours=4), topic_for=lambda q: q
        )
        await corrections.apply(unsure, decide(unsure, HALF), replay_id="r1")
        await engine.dispose()

    asyncio.run(scenario())
    assert sql_rows(clean_db, "SELECT reason, status, confidence FROM review_item") == [
        ("low_confidence", "pending", 0.6)
    ]


def test_live_precision_counts_decided_samples_of_the_window_only(clean_db: str) -> None:
    async def scenario() -> dict[str, tuple[int, int]]:
        engine = make_async_engine(clean_db)
        store = OutcomeStore(engine)
        events = [_event(n) for n in range(40) if HALF.in_quality_sample(_event(n).document_id)]
        for event in events[:6]:
            decision = decide(event, HALF)
            assert isinstance(decision, RouteTo)
            await store.record_route(event, decision, routed=routed_item(event, decision))
        await engine.dispose()
        # Four decided (three agreed), one of them sampled 40 days ago; one pending; one
        # decided long ago.
        sync = create_engine(clean_db)
        with sync.begin() as conn:
            ids = [r[0] for r in conn.execute(text("SELECT id FROM review_item ORDER BY id"))]
            for item_id, label in zip(
                ids[:5], ["billing", "billing", "legal", "billing", "x"], strict=True
            ):
                conn.execute(
                    text(
                        "UPDATE review_item SET status = 'decided', decided_label = :l,"
                        " decided_at = now() WHERE id = :i"
                    ),
                    {"l": label, "i": item_id},
                )
            conn.execute(
                text(
                    "UPDATE review_item SET created_at = now() - interval '40 days' WHERE id = :i"
                ),
                {"i": ids[4]},
            )
        sync.dispose()
        engine = make_async_engine(clean_db)
        live = await QualitySamples(engine).live_precision(
            window=timedelta(days=30), confidence=0.95, labels=["legal"]
        )
        await engine.dispose()
        return {one.label: (one.agreed, one.decided) for one in live}

    assert asyncio.run(scenario()) == {"billing": (3, 4), "legal": (0, 0)}


def _setup_users(database_url: str) -> None:
    async def run() -> None:
        engine = make_async_engine(database_url)
        auth = AuthStore(engine)
        await auth.create_user("alice", PASSWORD, "reviewer")
        await auth.create_user("root", PASSWORD, "admin")
        await engine.dispose()

    asyncio.run(run())


def _login(client: TestClient, user: str) -> str:
    return review_login(client, user, PASSWORD)


def _gauge(metrics: str, name: str, label: str) -> float:
    found = re.search(rf'^{name}{{label="{label}"}} (\S+)$', metrics, re.MULTILINE)
    assert found, f"{name}{{label={label}}} not in /metrics"
    return float(found.group(1))


def _wait_for_metrics(client: TestClient, done: Callable[[str], bool]) -> str:
    deadline = time.monotonic() + 20
    metrics = client.get("/metrics").text
    while not done(metrics):
        assert time.monotonic() < deadline, metrics[-3000:]
        time.sleep(0.2)
        metrics = client.get("/metrics").text
    return metrics


def test_quality_samples_are_drawn_decided_in_the_review_ui_and_move_live_precision(
    isolated: Stack, clean_db: str, tmp_path: Path
) -> None:
    """The issue's test: the policy's share of routed documents is sampled (exactly the ones
    ``in_quality_sample`` names), a reviewer decides them in the review UI, and the
    live-precision gauges on its /metrics move to the Wilson numbers of those decisions."""
    env = {"TRIAGE_DATABASE_URL": clean_db}
    result = CliRunner().invoke(
        cli,
        [
            *("policy", "set", "--quality-sample", "0.5", "--target-precision", "0.9"),
            *("--reason", "measure live precision"),
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    policy = RoutingPolicy(version=1, quality_sample=0.5, target_precision=0.9)
    _setup_users(clean_db)
    routed = [_event(n, label="billing" if n % 2 else "legal", confidence=0.95) for n in range(40)]
    unsure = [_event(100 + n, confidence=0.6) for n in range(2)]
    expected = {e.document_id for e in routed if policy.in_quality_sample(e.document_id)}
    assert len(expected) >= 12, "too few samples for the test to measure anything"

    router = RouterSettings(
        kafka_bootstrap=isolated.kafka_bootstrap,
        database_url=clean_db,
        topic_prefix=isolated.topic_prefix,
        group_id="it-router-quality",
    )
    with TestClient(router_app(router)):
        asyncio.run(
            produce_many(
                isolated.kafka_bootstrap,
                isolated.topic(topics.CLASSIFIED),
                [(e.document_id.encode(), encode_event(e)) for e in routed + unsure],
            )
        )
        deadline = time.monotonic() + 60
        while sql_rows(clean_db, "SELECT count(*) FROM document_outcome")[0][0] < 42:
            assert time.monotonic() < deadline
            time.sleep(0.25)
    items = dict(sql_rows(clean_db, "SELECT document_id, reason FROM review_item"))
    assert {d for d, reason in items.items() if reason == "quality_sample"} == expected
    assert len(sql_rows(clean_db, "SELECT 1 FROM routing_decision")) == 40  # all 40 routed

    settings = ReviewSettings(
        database_url=clean_db,
        kafka_bootstrap=isolated.kafka_bootstrap,
        topic_prefix=isolated.topic_prefix,
        blob_dir=tmp_path / "blobs",
        labels=list(LABELS),
        gauge_interval_seconds=0.2,
    )
    with TestClient(review_app(settings)) as ui:
        before = _wait_for_metrics(ui, lambda m: "triage_live_precision_target_ratio 0.9" in m)
        for label in ("billing", "legal"):
            assert _gauge(before, "triage_quality_samples_decided", label) == 0
            assert _gauge(before, "triage_live_precision_lower_bound_ratio", label) == 0
        csrf = _login(ui, "alice")
        listed = ui.get("/api/v1/review-items").json()
        assert listed["total_open"] == len(expected) + 2
        assert listed["by_reason"] == {"low_confidence": len(expected) + 2}  # blind
        # The reviewer works the queue as usual: every sampled legal document goes to
        # technical instead, every third billing one to other; the rest stay as routed.
        counts: dict[str, list[int]] = {"billing": [0, 0], "legal": [0, 0]}
        label_of = {e.document_id: e.prediction.label for e in routed if e.prediction}
        for n, item in enumerate(listed["items"]):
            if item["document_id"] not in expected:
                continue
            routed_to = label_of[item["document_id"]]
            choice = "technical" if routed_to == "legal" else ("other" if n % 3 == 0 else routed_to)
            assert "Not claimed" in ui.get(f"/items/{item['id']}").text  # looking claims nothing
            done = ui.post(f"/items/{item['id']}/decide", data={"label": choice, "csrf": csrf})
            assert done.status_code == 200
            counts[routed_to][0] += choice == routed_to
            counts[routed_to][1] += 1
        assert counts["billing"][0] and counts["legal"][1]
        # Until a refresh has read every decision (the last one may be either label's).
        after = _wait_for_metrics(
            ui,
            lambda m: all(
                f'triage_quality_samples_decided{{label="{label}"}} {float(decided)}' in m
                for label, (_, decided) in counts.items()
            ),
        )
        for label, (agreed, decided) in counts.items():
            lower, _ = wilson_interval(agreed, decided, 0.95)
            assert _gauge(after, "triage_quality_samples_decided", label) == decided
            assert _gauge(after, "triage_live_precision_ratio", label) == pytest.approx(
                agreed / decided
            )
            assert _gauge(after, "triage_live_precision_lower_bound_ratio", label) == (
                pytest.approx(lower)
            )
        assert _gauge(after, "triage_live_precision_ratio", "legal") == 0.0
        # Reviewers do not see live precision (its counts would tell them what they sampled).
        assert "Live precision" not in ui.get("/dashboard").text
        ui.post("/logout", data={"csrf": csrf})
        _login(ui, "root")
        dashboard = ui.get("/dashboard").text
        assert "Live precision" in dashboard
        row = re.search(r'<tr data-label="billing">(.*?)</tr>', dashboard, re.DOTALL)
        assert row is not None
        agreed, decided = counts["billing"]
        assert f"<td>{decided}</td><td>{agreed}</td>" in row.group(1)
        assert f"{100 * agreed / decided:.1f}%" in row.group(1)
    # Overruled samples ended in the reviewer's queue, by a human.
    overruled = sql_rows(
        clean_db,
        "SELECT r.queue, i.decided_label FROM routing_decision r JOIN review_item i"
        " USING (document_id) WHERE i.decided_label <> i.predicted_label",
    )
    assert overruled and all(queue == label for queue, label in overruled)


def _normalised(html: str, item: dict[str, Any]) -> str:
    """A page with what belongs to the document itself (its ids, its neighbours, the claim's
    minute) replaced, so two documents' pages can be compared."""
    html = html.replace(item["document_id"], "DOC")
    html = re.sub(rf"/items/{item['id']}\b", "/items/ID", html)
    html = re.sub(r'data-(previous|next|item)="\d*"', "", html)
    html = re.sub(r"document-\d+", "document-ID", html)
    html = re.sub(r"Invoice \d{4}", "Invoice N", html)
    html = re.sub(r"until \d\d:\d\d", "until HH:MM", html)
    return re.sub(r'value="\d+"', 'value="N"', html)


def test_a_reviewer_cannot_tell_a_quality_sample_from_a_low_confidence_item(
    isolated: Stack, clean_db: str, tmp_path: Path
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")

    def document(n: int, confidence: float) -> DocumentClassifiedV1:
        sha = blobs.put(f"Invoice {n:04d} is overdue; please pay by Friday.".encode())
        event = classified(sha256=sha, confidence=confidence, filename="scan.txt")
        return event.model_copy(update={"policy_version": 1})

    candidates = [document(n, 0.99) for n in range(60)]
    sample = next(e for e in candidates if HALF.in_quality_sample(e.document_id))
    low_n = next(n for n, e in enumerate(candidates) if not HALF.in_quality_sample(e.document_id))
    low = document(low_n, 0.62)

    async def route() -> None:
        engine = make_async_engine(clean_db)
        store = OutcomeStore(engine)
        batch = [(e, decide(e, HALF)) for e in (sample, low)]
        assert isinstance(batch[0][1], RouteTo) and batch[0][1].quality_sample is not None
        await store.apply_batch(
            [(e, d, routed_item(e, d) if isinstance(d, RouteTo) else None) for e, d in batch]
        )
        await engine.dispose()

    asyncio.run(route())
    _setup_users(clean_db)
    settings = ReviewSettings(
        database_url=clean_db,
        kafka_bootstrap=isolated.kafka_bootstrap,
        topic_prefix=isolated.topic_prefix,
        blob_dir=tmp_path / "blobs",
    )
    with TestClient(review_app(settings)) as ui:
        _login(ui, "alice")
        listed = ui.get("/api/v1/review-items").json()
        assert listed["by_reason"] == {"low_confidence": 2}
        by_doc = {item["document_id"]: item for item in listed["items"]}
        seen_sample, seen_low = by_doc[sample.document_id], by_doc[low.document_id]
        # The JSON the queue offers, field by field, differs only in the document's own ids.
        own = {"id", "document_id", "claimed_by", "claimed_until"}
        assert {k: v for k, v in seen_sample.items() if k not in own} == {
            k: v for k, v in seen_low.items() if k not in own
        }
        assert "confidence" not in seen_sample
        # Filters: the sample is found as low confidence, never as a sample.
        for reason, matching in (("low_confidence", 2), ("quality_sample", 0)):
            assert (
                ui.get("/api/v1/review-items", params={"reason": reason}).json()["matching"]
                == matching
            )
        # The queue page's rows, and each item's page, read the same.
        page = ui.get("/").text
        rows = {
            doc: re.search(rf'<tr data-document-id="{doc}".*?</tr>', page, re.DOTALL)
            for doc in by_doc
        }
        assert all(rows.values())
        assert _normalised(rows[sample.document_id].group(0), seen_sample) == _normalised(  # type: ignore[union-attr]
            rows[low.document_id].group(0),  # type: ignore[union-attr]
            seen_low,
        )
        assert "quality" not in page.lower() and "99%" not in page
        pages = [ui.get(f"/items/{item['id']}").text for item in (seen_sample, seen_low)]
        assert "Not claimed" in pages[0] and "Not claimed" in pages[1]
        assert _normalised(pages[0], seen_sample) == _normalised(pages[1], seen_low)
        assert "quality" not in pages[0].lower()
