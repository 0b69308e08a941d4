"""Why the model thinks so, end to end on real Kafka and PostgreSQL: the classifier explains
its prediction, the router stores it with the review item, the item page shows it."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from tests.helpers import classified, received, review_sign_in
from tests.kafkatools import collect, produce
from tests.stack import Stack
from triage_classifier.app import create_app as classifier_app
from triage_classifier.settings import Settings as ClassifierSettings
from triage_contracts import Explanation, TermWeight, topics, utcnow
from triage_review_ui.app import create_app as review_app
from triage_review_ui.settings import Settings as ReviewSettings
from triage_router.app import create_app as router_app
from triage_router.settings import Settings as RouterSettings
from triage_runtime.accounts.store import AuthStore
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.kafka import encode_event
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason, SendToReview

PASSWORD = "correct horse battery"
# Legal words with one billing word: legal, not confidently, with "invoice" against it.
MIXED = "dear team the invoice for the contract clause, regards"


def _review_rows(database_url: str) -> list[Any]:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = list(
            conn.execute(
                text(
                    "SELECT id, document_id, predicted_label, threshold, explanation"
                    " FROM review_item"
                )
            ).all()
        )
    engine.dispose()
    return rows


def _add_reviewer(database_url: str) -> None:
    async def run() -> None:
        engine = make_async_engine(database_url)
        await AuthStore(engine).create_user("alice", PASSWORD, "reviewer")
        await engine.dispose()

    asyncio.run(run())


def _item_page(settings: ReviewSettings, item_id: int) -> str:
    with TestClient(review_app(settings)) as client:
        signed_in = review_sign_in(client, "alice", PASSWORD)
        assert signed_in.status_code == 200, signed_in.text
        page = client.get(f"/items/{item_id}")
        assert page.status_code == 200, page.text
        return page.text


def test_the_classifiers_explanation_reaches_the_review_item_and_its_page(
    isolated: Stack, clean_db: str, tmp_path: Path, small_model: Path
) -> None:
    stack = isolated
    blobs = LocalBlobStore(tmp_path / "blobs")
    document = received(blobs.put(MIXED.encode()))
    classifier = ClassifierSettings(
        kafka_bootstrap=stack.kafka_bootstrap,
        blob_dir=tmp_path / "blobs",
        topic_prefix=stack.topic_prefix,
        model_path=small_model,
        group_id="it-explain-classifier",
        extraction_workers=1,
    )
    router = RouterSettings(
        kafka_bootstrap=stack.kafka_bootstrap,
        database_url=clean_db,
        topic_prefix=stack.topic_prefix,
        group_id="it-explain-router",
    )
    with TestClient(classifier_app(classifier)), TestClient(router_app(router)):
        asyncio.run(
            produce(
                stack.kafka_bootstrap,
                stack.topic(topics.DOCUMENTS),
                encode_event(document),
                key=document.document_id.encode(),
            )
        )
        [event] = asyncio.run(
            collect(
                stack.kafka_bootstrap,
                [stack.topic(topics.CLASSIFIED)],
                until=lambda ms: any(m["key"] == document.document_id for m in ms),
            )
        )
        for _ in range(240):
            if rows := _review_rows(clean_db):
                break
            time.sleep(0.25)

    carried = Explanation.model_validate(event["value"]["explanation"])
    assert event["value"]["prediction"]["label"] == carried.label == "legal"
    assert carried.versus == "billing"
    assert carried.terms[0].term in {"contract", "clause", "contract clause"}
    assert carried.terms[-1] == TermWeight(term="invoice", weight=carried.terms[-1].weight)
    assert carried.terms[-1].weight < 0

    [(item_id, document_id, label, threshold, stored)] = rows
    assert (document_id, label) == (document.document_id, "legal")
    assert Explanation.model_validate(stored) == carried
    assert threshold == event["value"]["prediction"]["threshold"]

    _add_reviewer(clean_db)
    page = _item_page(
        ReviewSettings(
            database_url=clean_db,
            kafka_bootstrap=stack.kafka_bootstrap,
            topic_prefix=stack.topic_prefix,
            blob_dir=tmp_path / "blobs",
        ),
        item_id,
    )
    assert "Why the model thinks so" in page
    toward = re.findall(r'class="explain-toward" data-explain-term="([^"]+)"', page)
    assert toward == [t.term for t in carried.terms if t.weight > 0]
    assert 'class="explain-against" data-explain-term="invoice"' in page
    # The small model routes nothing without review: its thresholds are 1.
    assert threshold == 1.0
    assert "is never routed" in page
    confidence = event["value"]["prediction"]["confidence"]
    assert str(confidence) not in page and f"{confidence:.3f}" not in page


def test_the_page_escapes_terms_shows_the_threshold_and_says_when_there_is_none(
    isolated: Stack, clean_db: str, tmp_path: Path
) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    event = classified(sha256="e1" * 32, label="billing", confidence=0.6137, threshold=0.9)
    explained = event.model_copy(
        update={
            "explanation": Explanation(
                label="billing",
                versus="other",
                terms=(
                    TermWeight(term=hostile, weight=0.8),
                    TermWeight(term="payment", weight=0.3),
                    TermWeight(term="nda", weight=-0.2),
                ),
            )
        }
    )
    unexplained = classified(sha256="e2" * 32, label="billing", confidence=0.55, threshold=0.9)

    async def seed() -> None:
        engine = make_async_engine(clean_db)
        store = OutcomeStore(engine)
        due = SendToReview(ReviewReason.LOW_CONFIDENCE, 2, utcnow())
        await store.open_review(explained, due)
        await store.open_review(unexplained, due)
        await AuthStore(engine).create_user("alice", PASSWORD, "reviewer")
        await engine.dispose()

    asyncio.run(seed())
    ids = {r[1]: r[0] for r in _review_rows(clean_db)}
    settings = ReviewSettings(
        database_url=clean_db,
        kafka_bootstrap=isolated.kafka_bootstrap,
        topic_prefix=isolated.topic_prefix,
        blob_dir=tmp_path / "blobs",
    )
    page = _item_page(settings, ids[explained.document_id])
    assert hostile not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert re.search(r'class="threshold-value">0\.900<', page)
    assert 'data-explain-term="nda" data-explain-toward="other"' in page
    assert "0.6137" not in page and "0.614" not in page  # never the confidence

    bare = _item_page(settings, ids[unexplained.document_id])
    assert "No word-level explanation for this item" in bare
    assert re.search(r'class="threshold-value">0\.900<', bare)
