"""The schema is made by Alembic, and the router's writes are idempotent on real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import create_engine, inspect, text

from tests.helpers import classified
from tests.stack import Stack
from triage_contracts import DecidedBy
from triage_router.domain import ReviewReason, RouteTo, SendToReview
from triage_router.store import RouterStore
from triage_runtime.db.engine import make_async_engine, upgrade


def test_migrations_create_the_review_queue_and_repeat_safely(stack: Stack) -> None:
    upgrade(stack.database_url)  # a second upgrade is a no-op
    engine = create_engine(stack.database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {
            "review_item",
            "routing_decision",
            "routing_correction",
            "alembic_version",
        } <= tables
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0008"
    finally:
        engine.dispose()


def test_route_is_recorded_once_whatever_is_redelivered(clean_db: str) -> None:
    async def scenario() -> None:
        engine = make_async_engine(clean_db)
        store = RouterStore(engine)
        event = classified()
        decision = RouteTo("billing", DecidedBy.MODEL, 0.97)
        first_id, second_id = uuid.uuid4(), uuid.uuid4()
        first = await store.record_route(event, decision, event_id=first_id)
        assert first.event_id == first_id and first.published_at is None
        await store.mark_published(event.document_id)
        again = await store.record_route(event, decision, event_id=second_id)
        assert again.event_id == first_id, "a redelivery must reuse the stored event id"
        assert again.published_at is not None
        await engine.dispose()

    asyncio.run(scenario())


def test_review_item_is_opened_once(clean_db: str) -> None:
    async def scenario() -> list[tuple[str, str]]:
        engine = make_async_engine(clean_db)
        store = RouterStore(engine)
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
