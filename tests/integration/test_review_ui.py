"""The review queue page reads real PostgreSQL and never renders document data as markup."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi.testclient import TestClient

from tests.helpers import RECEIVED_AT, classified
from triage_contracts import ExtractionStatus
from triage_review_ui.app import create_app
from triage_review_ui.settings import Settings
from triage_router.domain import ReviewReason, SendToReview
from triage_router.store import RouterStore
from triage_runtime.db.engine import make_async_engine


def _open(database_url: str, items: list[tuple[object, SendToReview]]) -> None:
    async def scenario() -> None:
        engine = make_async_engine(database_url)
        store = RouterStore(engine)
        for event, decision in items:
            await store.open_review(event, decision)  # type: ignore[arg-type]
        await engine.dispose()

    asyncio.run(scenario())


def test_queue_lists_open_items_soonest_due_first_with_counts(clean_db: str) -> None:
    late = classified(sha256="b1" * 32, confidence=0.6, threshold=0.9)
    soon = classified(sha256="b2" * 32, status=ExtractionStatus.CORRUPT)
    _open(
        clean_db,
        [
            (late, SendToReview(ReviewReason.LOW_CONFIDENCE, 2, RECEIVED_AT + timedelta(hours=8))),
            (
                soon,
                SendToReview(ReviewReason.EXTRACTION_FAILED, 1, RECEIVED_AT + timedelta(hours=1)),
            ),
        ],
    )
    with TestClient(create_app(Settings(database_url=clean_db))) as client:
        queue = client.get("/api/v1/review-items").json()
        page = client.get("/")
    assert [i["document_id"] for i in queue["items"]] == [soon.document_id, late.document_id]
    assert queue["by_reason"] == {"extraction_failed": 1, "low_confidence": 1}
    assert queue["total_open"] == 2
    assert page.status_code == 200
    assert page.text.index(soon.document_id) < page.text.index(late.document_id)
    assert "60%" in page.text  # the model's confidence for the low-confidence item
    assert 'id="total-open">2<' in page.text


def test_document_data_is_escaped_in_the_page(clean_db: str) -> None:
    event = classified(sha256="b3" * 32, confidence=0.6, threshold=0.9)
    hostile = event.model_copy(
        update={
            "document": event.document.model_copy(
                update={"filename": "<script>alert('x')</script>.pdf"}
            )
        }
    )
    _open(clean_db, [(hostile, SendToReview(ReviewReason.LOW_CONFIDENCE, 2, RECEIVED_AT))])
    with TestClient(create_app(Settings(database_url=clean_db))) as client:
        page = client.get("/").text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;.pdf" in page
