"""The review UI against real PostgreSQL and Kafka: sign-in, the queue, deciding, roles."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import RECEIVED_AT, classified, review_login, review_sign_in
from tests.stack import Stack
from triage_contracts import EmailInfo, ExtractionStatus, utcnow
from triage_review_ui.app import create_app
from triage_review_ui.settings import Settings
from triage_runtime.accounts.store import AuthStore
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason, SendToReview

PASSWORD = "correct horse battery"


def _setup(database_url: str, blob_dir: Path) -> None:
    async def run() -> None:
        engine = make_async_engine(database_url)
        auth = AuthStore(engine)
        await auth.create_user("alice", PASSWORD, "reviewer")
        await auth.create_user("bob", PASSWORD, "reviewer")
        await auth.create_user("root", PASSWORD, "admin")
        store = OutcomeStore(engine)
        blobs = LocalBlobStore(blob_dir)
        hostile = "<script>alert('x')</script> Please check invoice 77, is this billing?"
        late = classified(sha256=blobs.put(hostile.encode()), confidence=0.6, threshold=0.9)
        email = EmailInfo(
            message_id="q7@example.com",
            subject="Invoice 77?",
            sender="dana@example.com",
            sender_name="Øberg, Dana <IT>",
            mailbox="INBOX",
            part="body",
        )
        late = late.model_copy(
            update={
                "document": late.document.model_copy(
                    update={"filename": "<b>x</b>.txt", "email": email}
                )
            }
        )
        soon = classified(sha256="b2" * 32, status=ExtractionStatus.CORRUPT)
        # Due in the future whatever day the tests run (RECEIVED_AT is a fixed date), so
        # exactly one item, the other, is overdue.
        await store.open_review(
            late, SendToReview(ReviewReason.LOW_CONFIDENCE, 2, utcnow() + timedelta(days=365))
        )
        await store.open_review(
            soon, SendToReview(ReviewReason.EXTRACTION_FAILED, 1, RECEIVED_AT + timedelta(hours=1))
        )
        await engine.dispose()

    asyncio.run(run())


@pytest.fixture
def app_settings(isolated: Stack, clean_db: str, tmp_path: Path) -> Settings:
    _setup(clean_db, tmp_path / "blobs")
    return Settings(
        database_url=clean_db,
        kafka_bootstrap=isolated.kafka_bootstrap,
        topic_prefix=isolated.topic_prefix,
        blob_dir=tmp_path / "blobs",
    )


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings)) as test_client:
        yield test_client


def _login(client: TestClient, user: str) -> str:
    return review_login(client, user, PASSWORD)


def test_pages_need_a_signed_in_user(client: TestClient) -> None:
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert client.get("/api/v1/review-items").status_code == 401
    wrong = review_sign_in(client, "alice", "nope nope nope")
    assert wrong.status_code == 401
    _login(client, "alice")
    assert client.get("/api/v1/review-items").json()["total_open"] == 2
    cookie = client.cookies.get("triage_session")
    assert cookie
    header = review_sign_in(client, "alice", PASSWORD, follow=False).headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header


def test_logins_are_rate_limited(client: TestClient) -> None:
    for _ in range(5):
        assert review_sign_in(client, "bob", "x" * 12).status_code == 401
    limited = review_sign_in(client, "bob", PASSWORD)
    assert limited.status_code == 429


def test_queue_filters_sorts_and_escapes(client: TestClient) -> None:
    _login(client, "alice")
    page = client.get("/").text
    assert page.index("extraction failed") < page.index("low confidence")
    assert "<b>x</b>.txt" not in page and "&lt;b&gt;x&lt;/b&gt;.txt" in page
    only = client.get("/api/v1/review-items", params={"reason": "low_confidence"}).json()
    assert only["matching"] == 1 and only["items"][0]["reason"] == "low_confidence"
    assert client.get("/api/v1/review-items", params={"label": "legal"}).json()["matching"] == 0


def test_open_claim_decide_and_the_audit_trail(client: TestClient) -> None:
    csrf = _login(client, "alice")
    items = client.get("/api/v1/review-items").json()["items"]
    low = next(i for i in items if i["reason"] == "low_confidence")
    page = client.get(f"/items/{low['id']}").text
    assert "Not claimed" in page, "looking claims nothing"
    client.post(f"/items/{low['id']}/claim", data={"csrf": csrf})
    page = client.get(f"/items/{low['id']}").text
    assert "Claimed by you" in page
    assert "&lt;script&gt;alert" in page and "<script>alert" not in page
    # The model's suggestion, never its confidence (which would tell a quality sample apart).
    assert "billing" in page and "60%" not in page and "0.6" not in page
    assert "dana@example.com" in page and "mailbox INBOX" in page and "Invoice 77?" in page
    assert "Øberg, Dana &lt;IT&gt;</strong>" in page, "the display name, escaped"
    assert "&lt;dana@example.com&gt;" in page
    original = client.get(f"/items/{low['id']}/document")
    assert original.headers["content-disposition"].startswith("attachment")
    assert original.headers["content-security-policy"] == "sandbox"
    assert original.headers["x-content-type-options"] == "nosniff"
    refused = client.post(f"/items/{low['id']}/decide", data={"label": "billing"})
    assert refused.status_code == 403, "a form without the CSRF token is refused"
    decided = client.post(
        f"/items/{low['id']}/decide", data={"label": "legal", "csrf": csrf, "note": "contract"}
    )
    assert decided.status_code == 200
    audit = client.get("/audit").text
    assert "decide" in audit and "alice" in audit
    dashboard = client.get("/dashboard").text
    assert "100%" in dashboard  # alice overrode the model's billing with legal


def test_others_claims_and_roles_are_enforced_on_the_server(app_settings: Settings) -> None:
    with TestClient(create_app(app_settings)) as alice, TestClient(create_app(app_settings)) as bob:
        alice_csrf = _login(alice, "alice")
        bob_csrf = _login(bob, "bob")
        item = alice.get("/api/v1/review-items").json()["items"][0]
        alice.post(f"/items/{item['id']}/claim", data={"csrf": alice_csrf})
        assert "Claimed by you" in alice.get(f"/items/{item['id']}").text
        assert "alice</strong> is working on this item" in bob.get(f"/items/{item['id']}").text
        stolen = bob.post(f"/items/{item['id']}/decide", data={"label": "other", "csrf": bob_csrf})
        assert stolen.status_code == 409 and "alice</strong> holds this item" in stolen.text
        assert bob.get("/admin/users").status_code == 403
        forbidden = bob.post(
            "/admin/users",
            data={"username": "mallory", "password": PASSWORD, "role": "admin", "csrf": bob_csrf},
        )
        assert forbidden.status_code == 403


def test_admin_adds_users_and_bulk_decide_skips_claimed(client: TestClient) -> None:
    csrf = _login(client, "root")
    added = client.post(
        "/admin/users",
        data={"username": "carol", "password": PASSWORD, "role": "reviewer", "csrf": csrf},
    )
    assert added.status_code == 200 and "carol" in added.text
    ids = [i["id"] for i in client.get("/api/v1/review-items").json()["items"]]
    result = client.post(
        "/bulk-decide", data={"label": "other", "csrf": csrf, "item_id": [str(i) for i in ids]}
    )
    assert result.status_code == 200
    assert "Decided 2 item(s); skipped 0" in result.text
    assert client.get("/api/v1/review-items").json()["total_open"] == 0


def test_queue_gauges_for_alerting(client: TestClient) -> None:
    import time

    metrics = ""
    for _ in range(50):
        metrics = client.get("/metrics").text
        if "triage_review_queue_overdue_items 1.0" in metrics:
            break
        time.sleep(0.1)
    assert "triage_review_queue_overdue_items 1.0" in metrics
    assert 'triage_review_queue_open_items{reason="low_confidence"} 1.0' in metrics
    assert 'triage_review_queue_open_items{reason="extraction_failed"} 1.0' in metrics
    age = re.search(r"^triage_review_queue_oldest_age_seconds (\S+)$", metrics, re.MULTILINE)
    assert age is not None and float(age.group(1)) > 0


def test_errors_are_html_pages_for_people_and_json_for_the_api(client: TestClient) -> None:
    csrf = _login(client, "alice")
    item = client.get("/api/v1/review-items").json()["items"][0]["id"]

    missing_label = client.post(f"/items/{item}/decide", data={"csrf": csrf})
    assert missing_label.status_code == 422
    assert missing_label.headers["content-type"].startswith("text/html")
    assert "Some of the form could not be used" in missing_label.text
    assert "label: Field required" in missing_label.text
    assert 'action="/logout"' in missing_label.text, "the page keeps the signed-in header"

    stale = client.post(f"/items/{item}/decide", data={"label": "billing", "csrf": "stale"})
    assert stale.status_code == 403 and stale.headers["content-type"].startswith("text/html")
    assert "CSRF token is missing or stale" in stale.text

    nowhere = client.get("/items/999999")
    assert nowhere.status_code == 404 and "no such review item" in nowhere.text
    assert nowhere.headers["content-type"].startswith("text/html")

    api = client.get("/api/v1/review-items", params={"age": "soon"})
    assert api.status_code == 422 and api.json()["detail"][0]["loc"][-1] == "age"
