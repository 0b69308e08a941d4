"""The schema is made by Alembic, and the router's writes are idempotent on real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests.helpers import classified, routed_item
from tests.stack import Stack
from triage_contracts import DecidedBy, DocumentRoutedV1
from triage_runtime.db.engine import alembic_config, make_async_engine, upgrade
from triage_runtime.outcomes.store import Item, OutcomeStore
from triage_runtime.policy_store import PolicyChange, PolicyStore
from triage_runtime.routing import ReviewReason, RouteTo, SendToReview


def test_migrations_create_the_review_queue_and_repeat_safely(stack: Stack) -> None:
    upgrade(stack.database_url)  # a second upgrade is a no-op
    engine = create_engine(stack.database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {
            "review_item",
            "routing_decision",
            "routing_correction",
            "routing_policy",
            "alembic_version",
        } <= tables
        head = ScriptDirectory.from_config(alembic_config(stack.database_url)).get_current_head()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    finally:
        engine.dispose()


def test_the_routing_policy_history_cannot_be_rewritten(clean_db: str) -> None:
    async def change() -> int | None:
        engine = make_async_engine(clean_db)
        try:
            policy = await PolicyStore(engine).change(
                PolicyChange(shadow_sample=0.25), actor="test", reason="sample a quarter"
            )
        finally:
            await engine.dispose()
        return policy.version

    assert asyncio.run(change()) == 1
    engine = create_engine(clean_db)
    try:
        for statement in (
            "UPDATE routing_policy SET shadow_sample = 1",
            "DELETE FROM routing_policy",
        ):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT shadow_sample FROM routing_policy")).scalar() == 0.25
    finally:
        engine.dispose()


def test_route_is_recorded_once_whatever_is_redelivered(clean_db: str) -> None:
    async def scenario() -> None:
        engine = make_async_engine(clean_db)
        store = OutcomeStore(engine)
        event = classified()
        decision = RouteTo("billing", DecidedBy.MODEL, 0.97)
        first_id, second_id = uuid.uuid4(), uuid.uuid4()
        first = await store.record_route(
            event, decision, routed=routed_item(event, decision, event_id=first_id)
        )
        assert first.event_id == first_id and first.created
        again = await store.record_route(
            event, decision, routed=routed_item(event, decision, event_id=second_id)
        )
        assert again.event_id == first_id, "a redelivery must reuse the stored event id"
        assert not again.created
        await engine.dispose()

    asyncio.run(scenario())


def test_review_item_is_opened_once(clean_db: str) -> None:
    async def scenario() -> list[tuple[str, str]]:
        engine = make_async_engine(clean_db)
        store = OutcomeStore(engine)
        event = classified(confidence=0.55, threshold=0.9)
        decision = SendToReview(ReviewReason.LOW_CONFIDENCE, 2, event.document.received_at)
        assert await store.open_review(event, decision) is True
        assert await store.open_review(event, decision) is False
        await engine.dispose()
        sync = create_engine(clean_db)
        with sync.connect() as conn:
            rows = conn.execute(text("SELECT document_id, reason FROM review_item")).all()
        sync.dispose()
        return [(r[0], r[1]) for r in rows]

    rows = asyncio.run(scenario())
    assert rows == [(classified().document_id, "low_confidence")]


def test_a_batch_of_distinct_documents_ends_as_if_applied_one_by_one(clean_db: str) -> None:
    """apply_batch's set-wise statements give the outcome of record_route / open_review."""
    import hashlib

    from sqlalchemy import bindparam

    from triage_contracts import Producer, Source, SourceKind, utcnow
    from triage_ingest import domain as ingest_domain
    from triage_ingest.store import IngestStore

    due = utcnow()
    route = RouteTo("billing", DecidedBy.MODEL, 0.97)
    review = SendToReview(ReviewReason.LOW_CONFIDENCE, 50, due)

    def sha(tag: str, n: int) -> str:
        return hashlib.sha256(f"{tag}-{n}".encode()).hexdigest()

    async def scenario(tag: str, *, batched: bool) -> tuple[list[Any], list[Any]]:
        engine = make_async_engine(clean_db)
        store = OutcomeStore(engine)
        events = [classified(sha256=sha(tag, n)) for n in range(7)]
        await IngestStore(engine).record_documents(
            [
                ingest_domain.document_received(
                    source=Source(kind=SourceKind.UPLOAD, name="http-upload"),
                    sha256=sha(tag, n),
                    size_bytes=10,
                    media_type="text/plain",
                    filename=None,
                    received_at=utcnow(),
                    producer=Producer(service="ingest", version="test"),
                )
                for n in range(7)
            ],
            topic="test.triage.documents",
        )
        ids = [e.document_id for e in events]
        # The state before: 2 is in review, 3 and 4 are routed (published), 5 was withdrawn
        # by a replay, 6 was decided by a human.
        await store.open_review(events[2], review)
        await store.open_review(events[6], review)
        for n in (3, 4, 5):
            await store.record_route(events[n], route, routed=routed_item(events[n], route))
        sync = create_engine(clean_db)
        with sync.begin() as conn:
            conn.execute(
                text("UPDATE routing_decision SET withdrawn_at = now() WHERE document_id = :d"),
                {"d": ids[5]},
            )
            conn.execute(  # what a reviewer's decision does to the outcome
                text(
                    "UPDATE document_outcome SET kind = 'routed', queue = 'legal',"
                    " decided_by = 'human' WHERE document_id = :d"
                ),
                {"d": ids[6]},
            )
        given = [uuid.uuid4() for _ in ids]

        def routed(n: int) -> tuple[str, DocumentRoutedV1]:
            return routed_item(events[n], route, event_id=given[n])

        items: list[Item] = [
            (events[0], route, routed(0)),  # new: routed
            (events[1], review, None),  # new: to review
            (events[2], route, routed(2)),  # in review: stays there
            (events[3], review, None),  # routed: stays routed
            (events[4], route, routed(4)),  # routed: a duplicate
            (events[5], route, routed(5)),  # withdrawn: never re-applied
            (events[6], route, routed(6)),  # decided by a human: status stays
        ]
        if batched:
            results = await store.apply_batch(items)
        else:
            results = []
            for e, d, r in items:
                if isinstance(d, SendToReview):
                    results.append(await store.open_review(e, d))
                elif r is not None:
                    results.append(await store.record_route(e, d, routed=r))
        await engine.dispose()
        shown: list[Any] = []
        for n, result in enumerate(results):
            if isinstance(result, bool):
                shown.append(result)
            else:
                shown.append(
                    (result.queue, result.created, result.in_review, result.event_id == given[n])
                )
        with sync.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT d.document_id, d.status, d.queue, r.queue, i.status,"
                    " (SELECT count(*) FROM outbox o WHERE o.event_id = r.event_id)"
                    " FROM document_status d"
                    " LEFT JOIN routing_decision r USING (document_id)"
                    " LEFT JOIN review_item i USING (document_id)"
                    " WHERE d.document_id IN :ids"
                ).bindparams(bindparam("ids", expanding=True)),
                {"ids": ids},
            ).all()
        sync.dispose()
        by_id = {row[0]: tuple(row[1:]) for row in rows}
        return shown, [by_id[i] for i in ids]

    one_by_one = asyncio.run(scenario("single", batched=False))
    batched = asyncio.run(scenario("batch", batched=True))
    assert batched == one_by_one
    results, state = batched
    assert results[0] == ("billing", True, False, True)  # routed now, its event in the outbox
    assert state[0][4] == 1
    assert results[1] is True  # a review item opened
    assert results[2] == ("billing", False, True, True)  # kept in review
    assert results[3] is False  # kept routed
    assert results[4][:2] == ("billing", False) and not results[4][3]  # the stored routing
    assert results[5][:2] == ("billing", False) and not results[5][3]  # withdrawn: as stored
    assert state[0][:2] == ("routed", "billing")
    assert state[1][0] == "in_review" and state[1][3] == "pending"
    assert state[6][0] == "decided"


def test_a_document_twice_in_one_batch_keeps_its_first_outcome(clean_db: str) -> None:
    from triage_contracts import utcnow

    async def scenario() -> list[Any]:
        engine = make_async_engine(clean_db)
        event = classified(sha256="e7" * 32)
        route = RouteTo("billing", DecidedBy.MODEL, 0.97)
        review = SendToReview(ReviewReason.LOW_CONFIDENCE, 50, utcnow())
        results = await OutcomeStore(engine).apply_batch(
            [
                (event, route, routed_item(event, route)),
                (event, review, None),  # a redelivery, scored differently
            ]
        )
        await engine.dispose()
        return results

    routed, reviewed = asyncio.run(scenario())
    assert not isinstance(routed, bool) and routed.queue == "billing"
    assert reviewed is False


def test_the_database_refuses_a_second_outcome_for_one_document(clean_db: str) -> None:
    event = classified(sha256="f1" * 32)

    async def first() -> None:
        engine = make_async_engine(clean_db)
        route = RouteTo("billing", DecidedBy.MODEL, 0.97)
        await OutcomeStore(engine).record_route(event, route, routed=routed_item(event, route))
        await engine.dispose()

    asyncio.run(first())
    engine = create_engine(clean_db)
    refused = [
        # a second outcome of any kind
        "INSERT INTO document_outcome (document_id, kind) VALUES (:d, 'review')",
        # a routed outcome without a queue
        "INSERT INTO document_outcome (document_id, kind) VALUES ('doc_x', 'routed')",
        # a kind that is not an outcome
        "INSERT INTO document_outcome (document_id, kind, queue) VALUES ('doc_y', 'lost', 'a')",
        # a review item for a document whose outcome was never claimed
        "INSERT INTO review_item (document_id, reason, priority, due_at, extraction_status,"
        " source_kind, source_name, media_type, blob_sha256, received_at, trace_id,"
        " classified_event_id) VALUES ('doc_z', 'low_confidence', 2, now(), 'ok', 'upload',"
        " 'x', 'text/plain', 'ab', now(), 't', gen_random_uuid())",
    ]
    try:
        for statement in refused:
            with pytest.raises(IntegrityError), engine.begin() as conn:
                conn.execute(text(statement), {"d": event.document_id})
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT document_id, kind FROM document_outcome")).all()
        assert [tuple(r) for r in rows] == [(event.document_id, "routed")]
    finally:
        engine.dispose()


def test_concurrent_decisions_for_one_document_give_it_exactly_one_outcome(
    clean_db: str,
) -> None:
    """Twenty routers at once (a rebalance, redeliveries), half routing and half reviewing the
    same document: one decision wins, and the document has one outcome and one detail row."""
    from triage_contracts import utcnow

    event = classified(sha256="f2" * 32)
    route = RouteTo("billing", DecidedBy.MODEL, 0.97)
    review = SendToReview(ReviewReason.LOW_CONFIDENCE, 2, utcnow())

    async def race() -> list[Any]:
        engine = make_async_engine(clean_db, pool_size=20)
        store = OutcomeStore(engine)

        async def one(n: int) -> Any:
            if n % 2:
                return await store.open_review(event, review)
            return await store.record_route(event, route, routed=routed_item(event, route))

        try:
            return list(await asyncio.gather(*(one(n) for n in range(20))))
        finally:
            await engine.dispose()

    results = asyncio.run(race())
    engine = create_engine(clean_db)
    try:
        with engine.connect() as conn:
            [(kind, outcomes, routings, reviews, events)] = conn.execute(
                text(
                    "SELECT max(kind), count(*),"
                    " (SELECT count(*) FROM routing_decision),"
                    " (SELECT count(*) FROM review_item),"
                    " (SELECT count(*) FROM outbox) FROM document_outcome"
                )
            ).all()
    finally:
        engine.dispose()
    assert outcomes == 1
    assert (routings, reviews) == ((1, 0) if kind == "routed" else (0, 1))
    assert events == routings  # one routed event in the outbox, or none
    opened = [r for r in results if r is True]
    routed_first = [r for r in results if not isinstance(r, bool) and not r.in_review]
    if kind == "routed":
        # Every router that tried to route sees the one stored routing (the same event id).
        assert not opened and len({r.event_id for r in routed_first}) == 1
    else:
        assert len(opened) == 1 and not routed_first


def test_a_dead_letter_is_a_documents_outcome_until_it_is_scored_after_all(clean_db: str) -> None:
    from triage_contracts import DeadLetterV1, ErrorClass, Producer, Source, SourceKind, utcnow
    from triage_ingest import domain as ingest_domain
    from triage_ingest.store import IngestStore

    lost, routed = classified(sha256="d1" * 32), classified(sha256="d2" * 32)

    def letter(document_id: str) -> DeadLetterV1:
        return DeadLetterV1(
            producer=Producer(service="classifier", version="test"),
            document_id=document_id,
            stage="classifier",
            error_class=ErrorClass.BLOB_MISSING,
            reason="blob is not in the blob store",
            source_topic="triage.documents.v1",
            source_partition=0,
            source_offset=1,
            original_value_b64="e30=",
        )

    async def scenario() -> tuple[list[str], list[str], dict[str, Any] | None]:
        engine = make_async_engine(clean_db)
        store, ingest = OutcomeStore(engine), IngestStore(engine)
        await ingest.record_documents(
            [
                ingest_domain.document_received(
                    source=Source(kind=SourceKind.UPLOAD, name="http-upload"),
                    sha256=sha,
                    size_bytes=10,
                    media_type="text/plain",
                    filename=None,
                    received_at=utcnow(),
                    producer=Producer(service="ingest", version="test"),
                )
                for sha in ("d1" * 32, "d2" * 32)
            ],
            topic="test.triage.documents",
        )
        billing = RouteTo("billing", DecidedBy.MODEL, 0.97)
        await store.record_route(routed, billing, routed=routed_item(routed, billing))
        first = await store.record_dead_letters(
            [letter(lost.document_id), letter(routed.document_id)]
        )
        again = await store.record_dead_letters([letter(lost.document_id)])
        status = await ingest.status(lost.document_id)
        # A re-driven record scored after all: the dead letter gives way to the routing.
        legal = RouteTo("legal", DecidedBy.MODEL, 0.9)
        await store.record_route(lost, legal, routed=routed_item(lost, legal))
        after = await ingest.status(lost.document_id)
        assert after is not None and (after["status"], after["queue"]) == ("routed", "legal")
        assert after["dead_letter"] is None
        async with engine.connect() as conn:  # the re-drive cleared the reason
            cleared = await conn.execute(
                text("SELECT dead_letter_reason FROM document_outcome WHERE document_id = :d"),
                {"d": lost.document_id},
            )
            assert cleared.scalar_one() is None
        await engine.dispose()
        return first, again, status

    first, again, status = asyncio.run(scenario())
    assert first == [lost.document_id]  # the routed document keeps its outcome
    assert again == []
    assert status is not None and status["status"] == "dead_lettered"
    assert status["dead_letter"] == {
        "stage": "classifier",
        "error_class": "blob_missing",
        "reason": "blob is not in the blob store",
    }


def test_the_outbox_migration_keeps_every_pending_event_or_refuses(stack: Stack) -> None:
    """0011 moves a replay's unpublished events into the outbox and refuses to run while a
    document's or routing's event is unpublished (it cannot rebuild those); its downgrade
    refuses while the outbox holds unpublished events."""
    import json
    import secrets

    from alembic import command
    from sqlalchemy.engine import make_url

    from triage_contracts import DocumentWithdrawnV1
    from triage_runtime.db.models import OutboxRow
    from triage_runtime.outbox import event_of

    name = f"triage_migrate_{secrets.token_hex(4)}"
    admin = create_engine(stack.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(stack.database_url).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    event = classified(sha256="0b" * 32)
    _, moved = routed_item(event, RouteTo("legal", DecidedBy.MODEL, 0.9))
    withdrawal = DocumentWithdrawnV1(
        producer=moved.producer,
        document_id=event.document_id,
        queue="billing",
        withdrawn_event_id=uuid.uuid4(),
        reason="re-scored by v2 in replay r1",
    )
    try:
        upgrade(url, "0010")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO document (document_id, source_kind, source_name, media_type,"
                    " blob_sha256, size_bytes, received_at, event_id, trace_id) VALUES"
                    " (:d, 'upload', 'x', 'text/plain', 'ab', 1, now(), gen_random_uuid(), 't')"
                ),
                {"d": event.document_id},
            )
        with pytest.raises(RuntimeError, match="1 document event"):
            upgrade(url)
        entries = [
            {"queue": queue, "schema": e.schema_name, "value": e.model_dump(mode="json")}
            for queue, e in (("billing", withdrawal), ("legal", moved))
        ]
        with engine.begin() as conn:
            conn.execute(text("UPDATE document SET published_at = now()"))  # the old relay ran
            conn.execute(
                text(
                    "INSERT INTO routing_correction (replay_id, document_id, from_queue, to_queue,"
                    " to_model_version, events) VALUES ('r1', :d, 'billing', 'legal', 'v2',"
                    " CAST(:events AS jsonb))"
                ),
                {"d": event.document_id, "events": json.dumps(entries)},
            )
        upgrade(url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM outbox ORDER BY id")).all()
        stored = [event_of(OutboxRow(**row._mapping)) for row in rows]
        assert [row.topic for row in rows] == ["triage.routed.billing.v1", "triage.routed.legal.v1"]
        assert stored == [withdrawal, moved]
        with pytest.raises(RuntimeError, match="2 outbox event"):
            command.downgrade(alembic_config(url), "0010")
        with engine.begin() as conn:
            conn.execute(text("UPDATE outbox SET published_at = now()"))
        command.downgrade(alembic_config(url), "0010")
        with engine.connect() as conn:
            published = conn.execute(text("SELECT published_at FROM document_status")).scalar()
        assert published is not None
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_the_same_bytes_uploaded_at_once_are_one_document_and_one_event(clean_db: str) -> None:
    """Twenty requests carrying the same bytes at the same moment (each with its own event
    id, as separate uploads make them): one creates the document, all get its event id, and
    the outbox holds its one DocumentReceived."""
    from triage_contracts import Producer, Source, SourceKind, utcnow
    from triage_ingest import domain as ingest_domain
    from triage_ingest.store import IngestStore

    def upload() -> Any:
        return ingest_domain.document_received(
            source=Source(kind=SourceKind.UPLOAD, name="http-upload"),
            sha256="c4" * 32,
            size_bytes=10,
            media_type="text/plain",
            filename="same.txt",
            received_at=utcnow(),
            producer=Producer(service="ingest", version="test"),
        )

    async def race() -> list[Any]:
        engine = make_async_engine(clean_db, pool_size=20)
        store = IngestStore(engine)
        try:
            return list(
                await asyncio.gather(
                    *(store.record_documents([upload()], topic="t.documents") for _ in range(20))
                )
            )
        finally:
            await engine.dispose()

    results = [stored for [stored] in asyncio.run(race())]
    assert sum(stored.created for stored in results) == 1
    assert len({stored.event_id for stored in results}) == 1
    engine = create_engine(clean_db)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT event_id, topic FROM outbox")).all()
    finally:
        engine.dispose()
    assert [(row[0], row[1]) for row in rows] == [(results[0].event_id, "t.documents")]
