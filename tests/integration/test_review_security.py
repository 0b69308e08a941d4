"""The review UI's security on real PostgreSQL: CSRF on every state-changing route, headers,
sign-in back-off over HTTP, trusted proxies, Secure cookies, and admins' own accounts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from tests.helpers import RECEIVED_AT, classified, document_ref, review_sign_in
from tests.stack import Stack, empty_database
from triage_cli.user_cli import user_app
from triage_review_ui.app import create_app
from triage_review_ui.security import UNSAFE_METHODS
from triage_review_ui.settings import Settings
from triage_runtime.accounts.store import AuthStore
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason, SendToReview

PASSWORD = "correct horse battery"
PROXY = ("10.0.0.2", 40000)  # a proxy in TRIAGE_REVIEW_UI_TRUSTED_PROXIES below
UNTRUSTED = ("192.0.2.99", 40000)


def _seed(database_url: str, blob_dir: Path) -> None:
    async def run() -> None:
        engine = make_async_engine(database_url)
        auth = AuthStore(engine)
        await auth.create_user("alice", PASSWORD, "reviewer")
        await auth.create_user("root", PASSWORD, "admin")
        blobs = LocalBlobStore(blob_dir)
        pdf = classified(sha256="ef" * 32, confidence=0.5, threshold=0.9)
        pdf = pdf.model_copy(
            update={"document": document_ref(blobs.put(b"%PDF-1.4 not much"), "application/pdf")}
        )
        store = OutcomeStore(engine)
        await store.open_review(pdf, SendToReview(ReviewReason.LOW_CONFIDENCE, 2, RECEIVED_AT))
        await engine.dispose()

    asyncio.run(run())


def _settings(stack: Stack, database_url: str, blob_dir: Path, **more: Any) -> Settings:
    return Settings(
        database_url=database_url,
        kafka_bootstrap=stack.kafka_bootstrap,
        topic_prefix=stack.topic_prefix,
        blob_dir=blob_dir,
        **more,
    )


@pytest.fixture
def app_settings(isolated: Stack, clean_db: str, tmp_path: Path) -> Settings:
    _seed(clean_db, tmp_path / "blobs")
    return _settings(isolated, clean_db, tmp_path / "blobs", trusted_proxies=["10.0.0.0/8"])


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    """A browser behind the trusted proxy (it says who the client is in X-Forwarded-For)."""
    with TestClient(create_app(app_settings), client=PROXY) as test_client:
        yield test_client


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found
    return found.group(1)


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


# ---------------------------------------------------------------------------
# CSRF: every state-changing route of the app, found in the app itself
# ---------------------------------------------------------------------------


def _routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    """(path, method, route) of every route the app answers, however it was included."""
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.path:
            for method in sorted(context.methods or ()):
                yield context.path, method, context.original_route


UNSAFE_ROUTES = sorted(
    (path, method)
    for path, method, _ in _routes(create_app(Settings()))
    if method in UNSAFE_METHODS
)
# What a path parameter or form field of a route is filled with: something that would work,
# so that only the token can be what is refused. Anything else gets "1".
SAMPLES = {
    "item_id": "1",
    "username": "alice",
    "change": "disable",
    "label": "billing",
    "password": PASSWORD,
    "role": "reviewer",
}


# A row as text, without the searchable text the review UI stores in the background.
ROW = "(to_jsonb(t) - 'search_text' - 'search_vector')::text"


def _snapshot(database_url: str) -> list[Any]:
    """Every row a state-changing route might write, in a comparable form."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        rows = [
            conn.execute(
                text(f"SELECT md5(coalesce(string_agg({ROW}, ',' ORDER BY {ROW}), '')) {table}")
            ).scalar()
            for table in (
                "FROM app_user t",
                "FROM web_session t",
                "FROM review_item t",
                "FROM audit_log t",
                "FROM outbox t",
            )
        ]
    engine.dispose()
    return rows


def test_the_app_has_state_changing_routes_to_check() -> None:
    assert ("/login", "POST") in UNSAFE_ROUTES and ("/logout", "POST") in UNSAFE_ROUTES
    assert len(UNSAFE_ROUTES) >= 6


@pytest.mark.parametrize("token", ["missing", "wrong"])
@pytest.mark.parametrize(("path", "method"), UNSAFE_ROUTES)
def test_every_state_changing_route_refuses_a_missing_or_wrong_csrf_token(
    client: TestClient, app_settings: Settings, path: str, method: str, token: str
) -> None:
    if path != "/login":
        review_sign_in(client, "root", PASSWORD)
    app = client.app
    assert isinstance(app, FastAPI)
    route = next(r for p, m, r in _routes(app) if (p, m) == (path, method))
    url = re.sub(r"{(\w+)(:\w+)?}", lambda m: SAMPLES.get(m.group(1), "1"), path)
    form = {f.alias: SAMPLES.get(f.alias, "1") for f in route.dependant.body_params}
    form.pop("csrf", None)
    if path == "/login":
        form |= {"username": "alice", "password": PASSWORD}
    if token == "wrong":
        form["csrf"] = "not-the-token"
    before = _snapshot(app_settings.database_url)
    answer = client.request(method, url, data=form, follow_redirects=False)
    assert answer.status_code == 403, answer.text
    assert "triage_session=" not in answer.headers.get("set-cookie", "")
    assert _snapshot(app_settings.database_url) == before


def test_a_cross_site_sign_in_form_is_refused(client: TestClient) -> None:
    # A page on another site posts the form: the browser sends no pre-session cookie (it is
    # SameSite=strict) and the page cannot know the token.
    forged = client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf": "guessed-token-guessed"},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert "came from another site" in forged.text and "<html" in forged.text
    assert "triage_session" not in client.cookies
    form = client.get("/login")
    cookie = form.headers["set-cookie"]
    assert "triage_login_csrf=" in cookie and "SameSite=strict" in cookie
    assert "HttpOnly" in cookie and "Path=/login" in cookie
    assert review_sign_in(client, "alice", PASSWORD).status_code == 200


# ---------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    login = client.get("/login")
    review_sign_in(client, "alice", PASSWORD)
    pages = {
        "login": login,
        "queue": client.get("/"),
        "item": client.get("/items/1"),
        "error": client.get("/items/999"),
        "audit": client.get("/audit"),
        "dashboard": client.get("/dashboard"),
    }
    for name, page in pages.items():
        assert page.headers["content-type"].startswith("text/html"), name
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy, name
        assert "'unsafe-inline'" not in policy and "frame-ancestors 'self'" in policy, name
        assert page.headers["cache-control"] == "no-store", name
        assert page.headers["x-content-type-options"] == "nosniff", name
        assert page.headers["referrer-policy"] == "same-origin", name
        # Nothing inline for the policy to block: no inline script, style element or attribute.
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), name
        assert "<style" not in page.text and " style=" not in page.text, name
        assert not re.search(r"\son[a-z]+=", page.text), name
    assert '<iframe class="pdf"' in pages["item"].text  # the item frames its own PDF...
    document = client.get("/items/1/document")
    assert document.headers["content-type"] == "application/pdf"
    assert document.headers["content-security-policy"] == "frame-ancestors 'self'"  # ...which may
    assert document.headers["cache-control"] == "no-store"
    api = client.get("/api/v1/review-items")
    assert api.headers["cache-control"] == "no-store"
    assert api.headers["x-content-type-options"] == "nosniff"
    static = client.get("/static/triage.css")
    assert static.status_code == 200 and "no-store" not in static.headers.get("cache-control", "")
    assert static.headers["x-content-type-options"] == "nosniff"


# ---------------------------------------------------------------------------
# Sign-in back-off, over HTTP, behind the trusted proxy
# ---------------------------------------------------------------------------


def test_an_attacker_is_slowed_without_locking_alice_out(client: TestClient) -> None:
    attacker = "198.51.100.66"
    for _ in range(5):
        wrong = review_sign_in(client, "alice", "not her password", headers=_from(attacker))
        assert wrong.status_code == 401
    held = review_sign_in(client, "alice", PASSWORD, headers=_from(attacker))
    assert held.status_code == 429
    assert 1 <= int(held.headers["retry-after"]) <= 1
    assert "too many failed sign-ins; please try again in 1 second" in held.text
    assert '<form class="card login"' in held.text  # the sign-in page, with the message
    assert "triage_session" not in client.cookies
    # alice, from her own address, signs in at once.
    alice = review_sign_in(client, "alice", PASSWORD, headers=_from("203.0.113.5"))
    assert alice.status_code == 200 and "triage_session" in client.cookies


def test_an_office_behind_one_address_keeps_signing_in(client: TestClient) -> None:
    office = "192.0.2.1"
    for n in range(12):  # twelve people forget their passwords five times each, at once
        for _ in range(5):
            wrong = review_sign_in(client, f"clerk{n}", "forgotten pwd", headers=_from(office))
            assert wrong.status_code == 401
    assert review_sign_in(client, "alice", PASSWORD, headers=_from(office)).status_code == 200


def test_alice_s_own_browser_signs_in_while_her_name_is_attacked_from_her_office(
    client: TestClient,
) -> None:
    office = _from("192.0.2.1")
    assert review_sign_in(client, "alice", PASSWORD, headers=office).status_code == 200
    device = client.cookies["triage_device"]  # what alice's browser keeps
    client.cookies.clear()  # the attacker's browser, behind the same NAT
    for _ in range(5):
        assert review_sign_in(client, "alice", "guess guess", headers=office).status_code == 401
    client.cookies.clear()  # a browser alice never used: held like the attacker's
    assert review_sign_in(client, "alice", PASSWORD, headers=office).status_code == 429
    client.cookies.clear()  # alice's own browser
    client.cookies.set("triage_device", device, domain="testserver.local", path="/login")
    assert review_sign_in(client, "alice", PASSWORD, headers=office).status_code == 200


def test_forwarded_headers_from_an_untrusted_caller_are_ignored(
    isolated: Stack, clean_db: str, tmp_path: Path
) -> None:
    _seed(clean_db, tmp_path / "blobs")
    blobs = tmp_path / "blobs"
    cases = {
        "no proxies trusted (the default)": (
            _settings(isolated, clean_db, blobs),
            ("127.0.0.1", 1),
        ),
        "a caller outside the trusted ones": (
            _settings(isolated, clean_db, blobs, trusted_proxies=["10.0.0.0/8"]),
            UNTRUSTED,
        ),
    }
    for case, (settings, caller) in cases.items():
        empty_database(clean_db)
        _seed(clean_db, blobs)
        with TestClient(create_app(settings), client=caller) as client:
            # A new address each time would dodge the back-off if X-Forwarded-For were believed.
            for n in range(5):
                spoofed = _from(f"198.51.100.{n}")
                assert (
                    review_sign_in(client, "alice", "guess guess", headers=spoofed).status_code
                    == 401
                ), case
            held = review_sign_in(client, "alice", PASSWORD, headers=_from("198.51.100.77"))
            assert held.status_code == 429, case
            # Nor is X-Forwarded-Proto: over plain HTTP the cookies are not Secure.
            page = client.get("/login", headers={"X-Forwarded-Proto": "https"})
            assert "Secure" not in page.headers["set-cookie"], case
        engine = create_engine(clean_db)
        with engine.begin() as conn:
            seen = conn.execute(text("SELECT DISTINCT remote_addr FROM login_attempt")).scalars()
            assert list(seen) == [caller[0]], case
        engine.dispose()


# ---------------------------------------------------------------------------
# Secure cookies
# ---------------------------------------------------------------------------


def _session_cookie(answer: Any) -> str:
    found = [c for c in answer.headers.get_list("set-cookie") if c.startswith("triage_session=")]
    assert found
    return str(found[0])


def test_cookies_are_secure_over_https_or_when_forced(app_settings: Settings) -> None:
    def browser(caller: tuple[str, int], url: str, **settings: Any) -> TestClient:
        app = create_app(app_settings.model_copy(update=settings))
        return TestClient(app, client=caller, base_url=url)

    with browser(PROXY, "http://testserver") as plain:
        signed_in = review_sign_in(plain, "alice", PASSWORD, follow=False)
        assert "Secure" not in _session_cookie(signed_in)
    with browser(UNTRUSTED, "https://testserver") as direct:
        signed_in = review_sign_in(direct, "alice", PASSWORD, follow=False)
        assert "Secure" in _session_cookie(signed_in)
    # The trusted proxy ends TLS and speaks HTTP to the app; X-Forwarded-Proto says HTTPS.
    with browser(PROXY, "http://testserver") as proxied:
        login = proxied.get("/login", headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in login.headers["set-cookie"]
    with browser(PROXY, "https://testserver", cookie_secure=True) as forced:
        answer = review_sign_in(forced, "alice", PASSWORD, follow=False)
        assert all("Secure" in c for c in answer.headers.get_list("set-cookie"))


# ---------------------------------------------------------------------------
# Admins and their own accounts
# ---------------------------------------------------------------------------


def test_an_admin_cannot_disable_their_own_account(client: TestClient) -> None:
    review_sign_in(client, "root", PASSWORD)
    users = client.get("/admin/users").text
    assert 'action="/admin/users/root/disable"' not in users
    assert 'action="/admin/users/alice/disable"' in users
    refused = client.post("/admin/users/root/disable", data={"csrf": _csrf(users)})
    assert refused.status_code == 409
    assert "you cannot disable your own account" in refused.text
    assert client.get("/admin/users").status_code == 200  # still signed in, still an admin
    unknown = client.post("/admin/users/nobody/disable", data={"csrf": _csrf(users)})
    assert unknown.status_code == 404 and "no user named" in unknown.text


def test_the_cli_refuses_to_disable_the_last_admin(
    app_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAGE_DATABASE_URL", app_settings.database_url)
    result = CliRunner().invoke(user_app, ["disable", "root"])
    assert result.exit_code == 1
    assert "'root' is the last enabled admin" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert CliRunner().invoke(user_app, ["disable", "alice"]).exit_code == 0
