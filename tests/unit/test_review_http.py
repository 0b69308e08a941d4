"""The review UI's pages, checks and background work, with PostgreSQL and Kafka in memory.

``create_app`` builds the real app; its auth store, queries and workflow are swapped for
in-memory fakes on ``app.state`` (what the routes read), and no test starts the lifespan.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tests.helpers import review_sign_in
from triage_contracts import utcnow
from triage_review_ui import background, domain
from triage_review_ui.app import create_app
from triage_review_ui.documents import ItemDocuments
from triage_review_ui.queries import (
    AuditRow,
    Dashboard,
    HistoryEntry,
    Mail,
    QueueFilter,
    QueueOrder,
    QueuePage,
    ReviewQueries,
)
from triage_review_ui.search import ItemTexts
from triage_review_ui.settings import Settings
from triage_runtime.accounts.credentials import Role, check_password_policy, check_username
from triage_runtime.accounts.store import (
    DEFAULT_SESSION_TTL,
    AuthStore,
    RateLimitedError,
    SessionInfo,
    User,
)
from triage_runtime.accounts.throttle import LoginThrottle
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.models import ReviewItem
from triage_runtime.outcomes.review import (
    BulkResult,
    Claim,
    ClaimConflictError,
    ReviewWorkflow,
    WorkflowError,
)
from triage_runtime.outcomes.search_text import ReviewTexts
from triage_text.pool import ExtractionPool

PASSWORD = "correct horse battery"
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=15)


class MemoryAuth(AuthStore):
    """Users, sessions and the audit trail, in memory."""

    def __init__(self) -> None:  # no engine: nothing here reaches PostgreSQL
        self.users: dict[str, User] = {}
        self.passwords: dict[str, str] = {}
        self.sessions: dict[str, SessionInfo] = {}
        self.session_ttls: list[timedelta] = []
        self.trail: list[tuple[str, str, dict[str, Any] | None]] = []
        self.locked: set[str] = set()

    async def create_user(self, username: str, password: str, role: Role | str) -> User:
        check_username(username)
        check_password_policy(password)
        user = User(len(self.users) + 1, username, Role(role), False, T0, None)
        self.users[username], self.passwords[username] = user, password
        return user

    async def list_users(self) -> list[User]:
        return sorted(self.users.values(), key=lambda u: u.username)

    async def disable_user(self, username: str, *, by: str | None = None) -> None:
        self.users[username] = User(**{**self._fields(username), "disabled": True})

    async def enable_user(self, username: str) -> None:
        self.users[username] = User(**{**self._fields(username), "disabled": False})

    def _fields(self, username: str) -> dict[str, Any]:
        u = self.users[username]
        return {
            "id": u.id,
            "username": u.username,
            "role": u.role,
            "disabled": u.disabled,
            "created_at": u.created_at,
            "last_login_at": u.last_login_at,
        }

    async def authenticate(
        self, username: str, password: str, remote_addr: str, device: str | None = None
    ) -> User | None:
        if username in self.locked:
            raise RateLimitedError(retry_after=timedelta(minutes=15))
        if self.passwords.get(username) != password:
            return None
        return self.users[username]

    async def remember_device(self, user: User, device: str | None) -> str:
        return device or f"device-{user.id}"

    @property
    def throttle(self) -> LoginThrottle:
        return LoginThrottle()

    async def start_session(
        self, user_id: int, ttl: timedelta = DEFAULT_SESSION_TTL
    ) -> tuple[str, str]:
        user = next(u for u in self.users.values() if u.id == user_id)
        token, csrf = f"token-{len(self.sessions)}", f"csrf-{len(self.sessions)}"
        self.sessions[token] = SessionInfo(user, csrf, utcnow() + ttl)
        self.session_ttls.append(ttl)
        return token, csrf

    async def session_user(self, token: str) -> SessionInfo | None:
        found = self.sessions.get(token)
        return None if found is None or self.users[found.user.username].disabled else found

    async def end_session(self, token: str) -> bool:
        return self.sessions.pop(token, None) is not None

    async def audit(
        self,
        actor: str,
        action: str,
        document_id: str | None = None,
        review_item_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        self.trail.append((actor, action, detail))
        return len(self.trail)


def _item(item_id: int, **fields: Any) -> ReviewItem:
    values: dict[str, Any] = {
        "id": item_id,
        "document_id": f"doc_{item_id:032x}",
        "status": "pending",
        "reason": "low_confidence",
        "priority": 1,
        "due_at": T0 + timedelta(hours=4),
        "predicted_label": "billing",
        "confidence": 0.6,
        "probabilities": {"billing": 0.6, "legal": 0.2, "technical": 0.1, "other": 0.1},
        "model_version": "m-1",
        "model_role": "champion",
        "extraction_status": "ok",
        "source_kind": "upload",
        "source_name": "alpha",
        "filename": f"letter-{item_id}.txt",
        "media_type": "text/plain",
        "blob_sha256": "00" * 32,
        "received_at": T0,
        "trace_id": "a" * 32,
        "classified_event_id": uuid.UUID(int=item_id),
    }
    return ReviewItem(**{**values, **fields})


class MemoryQueries(ReviewQueries):
    """The review queue's read side over a dict of items."""

    def __init__(self, items: Sequence[ReviewItem] = ()) -> None:
        self.items = {item.id: item for item in items}
        self.filters: list[tuple[int, QueueFilter | None, int]] = []
        self.stats = Dashboard(open_items=0, oldest_age_hours=None, overdue=0)

    def _open(self) -> list[int]:
        return sorted(i for i, item in self.items.items() if item.status != "decided")

    async def open_queue(
        self,
        *,
        limit: int,
        flt: QueueFilter | None = None,
        offset: int = 0,
        order: QueueOrder | None = None,
    ) -> QueuePage:
        self.filters.append((limit, flt, offset))
        return QueuePage(rows=[], total_open=len(self._open()), by_reason={}, matching=0)

    async def item(self, item_id: int) -> ReviewItem | None:
        return self.items.get(item_id)

    async def neighbour(self, item_id: int, *, after: bool) -> int | None:
        ids = [i for i in self._open() if (i > item_id if after else i < item_id)]
        return (ids[0] if after else ids[-1]) if ids else None

    async def first_open(self) -> int | None:
        return next(iter(self._open()), None)

    async def mail(self, item: ReviewItem) -> Mail | None:
        return None  # no document table here: no item is part of a mail

    async def audit(self, *, limit: int = 200) -> tuple[list[AuditRow], list[tuple[str, int]]]:
        return [], []

    async def history(self, item: ReviewItem) -> list[HistoryEntry]:
        return [HistoryEntry(item.received_at, None, "arrived")]

    async def last_decided(self, reviewer: str, *, since: datetime) -> ReviewItem | None:
        return None

    async def dashboard(self, *, due_soon: timedelta = timedelta(hours=2)) -> Dashboard:
        return self.stats


class MemoryTexts(ReviewTexts):
    """Review items' stored text in a dict (no search: nothing is marked)."""

    def __init__(self) -> None:  # no engine: nothing here reaches PostgreSQL
        self.texts: dict[int, str] = {}

    async def stored(self, item_id: int) -> str | None:
        return self.texts.get(item_id)

    async def store(self, item_id: int, text: str | None) -> bool:
        return self.texts.setdefault(item_id, text or "") == (text or "")

    async def headline(self, item_id: int, search: str, *, start: str, stop: str) -> str | None:
        return None


class MemoryWorkflow(ReviewWorkflow):
    """Claims and decisions on the items of a MemoryQueries."""

    def __init__(self, queries: MemoryQueries) -> None:
        self.queries = queries
        self.claims: dict[int, str] = {}

    async def claim(self, item_id: int, *, reviewer: str) -> Claim:
        holder = self.claims.setdefault(item_id, reviewer)
        if holder != reviewer:
            raise ClaimConflictError(f"claimed by {holder}")
        item = self.queries.items[item_id]
        item.status, item.claimed_by, item.claimed_until = "claimed", reviewer, utcnow() + LEASE
        return Claim(item_id, reviewer, item.claimed_until)

    async def release(self, item_id: int, *, reviewer: str) -> None:
        if self.claims.get(item_id) == reviewer:
            del self.claims[item_id]

    async def decide(
        self, item_id: int, *, reviewer: str, label: str, note: str | None = None
    ) -> None:
        item = self.queries.items[item_id]
        if item.status == "decided" or self.claims.get(item_id, reviewer) != reviewer:
            raise ClaimConflictError("decided, or someone else holds a claim on this item")
        self.claims[item_id] = reviewer
        item.status, item.decided_label, item.decided_by = "decided", label, reviewer

    async def bulk_decide(
        self, item_ids: Sequence[int], *, reviewer: str, label: str
    ) -> BulkResult:
        decided, skipped = [], {}
        for item_id in item_ids:
            try:
                await self.claim(item_id, reviewer=reviewer)
                await self.decide(item_id, reviewer=reviewer, label=label)
            except WorkflowError as exc:
                skipped[item_id] = str(exc)
            else:
                decided.append(item_id)
        return BulkResult(decided, skipped)


class Review:
    """The app under test, its fakes, and a browser that signs in."""

    def __init__(self, tmp_path: Path, items: Sequence[ReviewItem] = (), **overrides: Any) -> None:
        self.settings = Settings(blob_dir=tmp_path / "blobs", session_hours=2.0, **overrides)
        self.app = create_app(self.settings)
        self.auth, self.queries = MemoryAuth(), MemoryQueries(items)
        self.workflow = MemoryWorkflow(self.queries)
        self.app.state.auth = self.auth
        self.app.state.queries = self.queries
        self.app.state.workflow = self.workflow
        self.app.state.texts = ItemTexts(MemoryTexts(), self.app.state.documents)
        self.blobs = LocalBlobStore(self.settings.blob_dir)
        # No lifespan: Kafka and PostgreSQL stay unused.
        self.client = TestClient(self.app, follow_redirects=False)

    def sign_in(self, username: str, role: Role = Role.REVIEWER) -> str:
        """Sign ``username`` in through the login form; return the session's CSRF token."""
        asyncio.run(self.auth.create_user(username, PASSWORD, role))
        self.client.cookies.clear()
        signed_in = review_sign_in(self.client, username, PASSWORD, follow=False)
        assert signed_in.status_code == 303
        return self.auth.sessions[signed_in.cookies["triage_session"]].csrf_token


def test_pages_want_a_session_and_the_json_api_a_401(tmp_path: Path) -> None:
    review = Review(tmp_path)
    page = review.client.get("/items/3")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/items/3"
    assert review.client.get("/api/v1/review-items").status_code == 401
    review.client.cookies.set("triage_session", "forged")
    assert review.client.get("/dashboard").headers["location"] == "/login?next=/dashboard"


def test_signing_in_sets_a_strict_http_only_cookie_and_stays_on_the_site(
    tmp_path: Path,
) -> None:
    review = Review(tmp_path)
    asyncio.run(review.auth.create_user("rita", PASSWORD, Role.REVIEWER))
    signed_in = review_sign_in(
        review.client, "rita", PASSWORD, next="//evil.example.com/", follow=False
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/"
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=7200" in cookie
    assert "Secure" not in cookie
    assert review.auth.session_ttls == [timedelta(hours=2)]
    assert review.auth.trail == [("rita", "login", None)]
    inside = review_sign_in(review.client, "rita", PASSWORD, next="/items/7", follow=False)
    assert inside.headers["location"] == "/items/7"

    secure = Review(tmp_path, cookie_secure=True)
    secure.client.base_url = "https://testserver"  # a Secure cookie comes back only over HTTPS
    asyncio.run(secure.auth.create_user("rita", PASSWORD, Role.REVIEWER))
    signed_in = review_sign_in(secure.client, "rita", PASSWORD, follow=False)
    assert "Secure" in signed_in.headers["set-cookie"]


def test_a_wrong_password_is_401_and_a_locked_name_429_on_the_login_page(
    tmp_path: Path,
) -> None:
    review = Review(tmp_path)
    asyncio.run(review.auth.create_user("rita", PASSWORD, Role.REVIEWER))
    wrong = review_sign_in(review.client, "rita", "guess")
    assert wrong.status_code == 401
    assert "wrong user name or password" in wrong.text
    assert "triage_session" not in wrong.headers.get("set-cookie", "")
    review.auth.locked.add("rita")
    locked = review_sign_in(review.client, "rita", PASSWORD)
    assert locked.status_code == 429
    assert "too many failed sign-ins; please try again in 15 minutes" in locked.text
    assert locked.headers["retry-after"] == "900"


def test_signing_out_wants_the_csrf_token_and_ends_the_session(tmp_path: Path) -> None:
    review = Review(tmp_path)
    csrf = review.sign_in("rita")
    assert review.client.post("/logout", data={"csrf": "stale"}).status_code == 403
    assert len(review.auth.sessions) == 1
    signed_out = review.client.post("/logout", data={"csrf": csrf})
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/login"
    assert 'triage_session=""' in signed_out.headers["set-cookie"]
    assert review.auth.sessions == {}
    assert review.auth.trail[-1] == ("rita", "logout", None)


def test_the_queue_passes_its_filters_and_page_size_on(tmp_path: Path) -> None:
    review = Review(tmp_path, [_item(1)], page_size=7)
    review.sign_in("rita")
    page = review.client.get("/?reason=encrypted&label=&source=imap&age=1.5&offset=14")
    assert page.status_code == 200
    assert review.queries.filters[-1] == (
        7,
        QueueFilter(reason="encrypted", label=None, source="imap", min_age_hours=1.5),
        14,
    )
    listed = review.client.get("/api/v1/review-items?label=billing")
    assert listed.json() == {
        "total_open": 1,
        "matching": 0,
        "total": 0,
        "offset": 0,
        "limit": 7,
        "next": None,
        "by_reason": {},
        "items": [],
    }
    assert review.queries.filters[-1] == (7, QueueFilter(label="billing"), 0)
    assert review.client.get("/next").headers["location"] == "/items/1"


def test_opening_an_item_shows_its_text_and_top_labels_and_claims_nothing(
    tmp_path: Path,
) -> None:
    review = Review(tmp_path, [_item(1), _item(2)])
    sha = review.blobs.put(b"<b>the invoice</b> is overdue")
    review.queries.items[1].blob_sha256 = sha
    review.sign_in("rita")
    page = review.client.get("/items/1")
    assert page.status_code == 200
    assert review.workflow.claims == {}
    assert "&lt;b&gt;the invoice&lt;/b&gt; is overdue" in page.text  # escaped, never markup
    assert page.text.index(">billing<") < page.text.index(">legal<")
    assert 'data-next="2"' in page.text
    assert review.client.get("/items/99").status_code == 404

    asyncio.run(review.workflow.claim(2, reviewer="bob"))
    taken = review.client.get("/items/2")
    assert taken.status_code == 200
    assert "<strong>bob</strong> is working on this item" in taken.text


def test_only_a_pdf_is_shown_inline_and_anything_else_is_a_sandboxed_download(
    tmp_path: Path,
) -> None:
    review = Review(tmp_path, [_item(1, media_type="application/pdf"), _item(2)])
    review.queries.items[1].blob_sha256 = review.blobs.put(b"%PDF-1.4")
    review.queries.items[2].blob_sha256 = review.blobs.put(b"<script>alert(1)</script>")
    review.sign_in("rita")
    pdf = review.client.get("/items/1/document")
    assert pdf.content == b"%PDF-1.4"
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == 'inline; filename="document-1"'
    # Framed by the item page only; no default-src, which would stop Chromium's PDF viewer.
    assert pdf.headers["content-security-policy"] == "frame-ancestors 'self'"
    other = review.client.get("/items/2/document")
    assert other.headers["content-type"] == "application/octet-stream"
    assert other.headers["content-disposition"] == 'attachment; filename="document-2"'
    assert other.headers["content-security-policy"] == "sandbox"
    assert other.headers["x-content-type-options"] == "nosniff"


def test_deciding_wants_the_csrf_token_and_moves_on_to_the_next_open_item(
    tmp_path: Path,
) -> None:
    review = Review(tmp_path, [_item(1), _item(2), _item(3)])
    csrf = review.sign_in("rita")
    review.client.get("/items/2")
    form = {"label": "legal", "csrf": "stale"}
    assert review.client.post("/items/2/decide", data=form).status_code == 403
    decided = review.client.post("/items/2/decide", data={**form, "csrf": csrf})
    assert decided.status_code == 303
    assert decided.headers["location"] == "/items/3"
    assert review.queries.items[2].decided_label == "legal"
    again = review.client.post("/items/2/decide", data={**form, "csrf": csrf})
    assert again.status_code == 409
    review.client.get("/items/3")
    assert review.client.post("/items/3/release", data={"csrf": csrf}).status_code == 303
    assert review.workflow.claims == {2: "rita"}


def test_bulk_decisions_refuse_an_unknown_queue_and_report_what_they_skipped(
    tmp_path: Path,
) -> None:
    review = Review(tmp_path, [_item(1), _item(2)], labels=["billing", "legal"])
    csrf = review.sign_in("rita")
    form = {"label": "spam", "item_id": ["1", "2"], "csrf": csrf}
    assert review.client.post("/bulk-decide", data=form).status_code == 422
    review.workflow.claims[2] = "bob"
    done = review.client.post("/bulk-decide", data={**form, "label": "legal"})
    assert done.status_code == 200
    assert review.queries.items[1].decided_label == "legal"
    assert "claimed by bob" in done.text


def test_only_admins_manage_users(tmp_path: Path) -> None:
    review = Review(tmp_path)
    csrf = review.sign_in("rita")
    assert review.client.get("/admin/users").status_code == 403
    new = {"username": "newbie", "password": PASSWORD, "role": "reviewer", "csrf": csrf}
    assert review.client.post("/admin/users", data=new).status_code == 403

    csrf = review.sign_in("adam", Role.ADMIN)
    assert review.client.get("/admin/users").status_code == 200
    added = review.client.post("/admin/users", data={**new, "csrf": csrf})
    assert added.status_code == 303
    assert review.auth.trail[-1] == ("adam", "add_user", {"username": "newbie"})
    weak = review.client.post("/admin/users", data={**new, "username": "weak", "password": "x"})
    assert weak.status_code == 403  # the CSRF token is checked first
    weak = review.client.post(
        "/admin/users", data={**new, "username": "weak", "password": "x", "csrf": csrf}
    )
    assert weak.status_code == 422
    assert '<p class="error" role="alert">a password needs at least' in weak.text
    disabled = review.client.post("/admin/users/rita/disable", data={"csrf": csrf})
    assert disabled.status_code == 303
    assert review.auth.users["rita"].disabled
    assert review.client.post("/admin/users/rita/enable", data={"csrf": csrf}).status_code == 303
    assert not review.auth.users["rita"].disabled
    assert review.client.post("/admin/users/rita/delete", data={"csrf": csrf}).status_code == 404


def test_due_times_read_as_hours_and_minutes() -> None:
    now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert domain.due_in(now + timedelta(hours=2, minutes=5, seconds=30), now) == "due in 2h 5m"
    assert domain.due_in(now - timedelta(minutes=12), now) == "overdue 0h 12m"
    assert domain.due_in(now - timedelta(hours=25, minutes=1), now) == "overdue 25h 1m"


def test_filters_and_probabilities() -> None:
    assert domain.queue_filter("", "", "", None) == QueueFilter()
    assert domain.queue_filter("encrypted", None, "imap", 2.0) == QueueFilter(
        reason="encrypted", source="imap", min_age_hours=2.0
    )
    probabilities = {"a": 0.1, "b": 0.4, "c": 0.2, "d": 0.05, "e": 0.15, "f": 0.1}
    assert [label for label, _ in domain.top_probabilities(probabilities)] == [
        "b",
        "c",
        "e",
        "a",
        "f",
    ]
    assert domain.top_probabilities(None) == []


async def test_item_text_is_read_only_for_extractable_documents_and_is_capped(
    tmp_path: Path,
) -> None:
    blobs, pool = LocalBlobStore(tmp_path), ExtractionPool(workers=1)
    documents = ItemDocuments(blobs, pool)
    long_text = blobs.put(b"word " * 12_000)
    try:
        assert await documents.text(_item(1, blob_sha256=long_text)) == ("word " * 10_000)
        failed = _item(2, blob_sha256=long_text, extraction_status="timeout")
        assert await documents.text(failed) is None  # not re-extracted here
        assert await documents.text(_item(3, blob_sha256="ff" * 32)) is None  # the blob is gone
    finally:
        pool.close()


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_the_gauges_show_every_reason_and_the_oldest_age_in_seconds() -> None:
    queries = MemoryQueries()
    queries.stats = Dashboard(
        open_items=5,
        oldest_age_hours=1.5,
        overdue=2,
        by_reason={"low_confidence": 3, "encrypted": 2, "unheard_of": 9},
    )
    await background.QueueGauges(queries).refresh()
    assert _sample("triage_review_queue_open_items", reason="low_confidence") == 3
    assert _sample("triage_review_queue_open_items", reason="model_unavailable") == 0
    assert _sample("triage_review_queue_open_items", reason="unheard_of") is None
    assert _sample("triage_review_queue_oldest_age_seconds") == 5400
    assert _sample("triage_review_queue_overdue_items") == 2
    queries.stats = Dashboard(open_items=0, oldest_age_hours=None, overdue=0)
    await background.QueueGauges(queries).refresh()
    assert _sample("triage_review_queue_oldest_age_seconds") == 0


async def test_a_background_loop_logs_a_failure_and_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database restarting")
        if calls == 3:
            done.set()

    with caplog.at_level(logging.ERROR):
        loop = asyncio.create_task(background.every(0.001, flaky, "could not do the thing"))
        await asyncio.wait_for(done.wait(), timeout=5)
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
    [failure] = caplog.records
    assert failure.getMessage() == "could not do the thing"
    assert failure.name == "triage_review_ui.app" and failure.exc_info is not None
