"""The review UI's security and phone layout in a real Chromium, against the real process.

Back after signing out, the content security policy with the pages' own script and PDF frame,
a sign-in form posted from another site, the back-off page, X-Forwarded-For from a caller
that is no trusted proxy, an admin's own account, and the pages at 390 x 844.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import create_engine, text

from tests.e2e.reviewui import (
    ARTIFACTS,
    PASSWORD,
    create_people,
    empty_review_tables,
    open_item,
    run_async,
    running_review_ui,
    signed_in,
)
from tests.helpers import RECEIVED_AT, classified, document_ref
from tests.stack import Stack
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason, SendToReview

SECRET_TEXT = "Confidential: the settlement figure for account 4471 is in clause nine."
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def _seed(database_url: str, blob_dir: Path) -> None:
    async def run() -> None:
        engine = make_async_engine(database_url)
        people = ("alice", "carol", "mallory")
        await create_people(engine, [*((name, "reviewer") for name in people), ("root", "admin")])
        store = OutcomeStore(engine)
        blobs = LocalBlobStore(blob_dir)
        body = (SECRET_TEXT + " ") * 12 + "https://example.com/a/very/long/link/" + "x" * 80
        names = [
            "settlement-figures-for-the-quarterly-review-of-account-4471.txt",
            "invoice-dispute.txt",
            "outage-report.txt",
        ]
        for n, name in enumerate(names):
            sha = blobs.put(f"{n} {body}".encode())
            event = classified(sha256=sha, confidence=0.55, filename=name)
            await store.open_review(
                event,
                SendToReview(ReviewReason.LOW_CONFIDENCE, 2, RECEIVED_AT + timedelta(hours=n)),
            )
        pdf = classified(sha256="fe" * 32, confidence=0.55)
        pdf = pdf.model_copy(
            update={
                "document": document_ref(blobs.put(PDF), "application/pdf").model_copy(
                    update={"filename": "scanned-letter.pdf"}
                )
            }
        )
        await store.open_review(
            pdf, SendToReview(ReviewReason.LOW_CONFIDENCE, 2, RECEIVED_AT + timedelta(hours=9))
        )
        await engine.dispose()

    run_async(run)


@pytest.fixture(scope="module")
def review_ui(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The review UI as a process (no trusted proxies), with four items and three users."""
    work = tmp_path_factory.mktemp("review-security")
    empty_review_tables(stack.database_url)
    _seed(stack.database_url, work / "blobs")
    with running_review_ui(stack, work, "review-security") as url:
        yield url


def _policy_violations(page: Page) -> list[str]:
    """Console messages of the page that say the content security policy refused something."""
    seen: list[str] = []
    page.on(
        "console",
        lambda message: (
            seen.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return seen


def _sign_out(page: Page) -> None:
    sign_out = page.get_by_role("button", name="Sign out")
    expect(sign_out).to_be_visible()
    sign_out.click()
    expect(page.locator('input[name="username"]')).to_be_visible()


def test_back_after_signing_out_does_not_show_the_document(
    browser: Browser, review_ui: str
) -> None:
    page = signed_in(browser, review_ui, "alice")
    page.get_by_role(
        "link", name="settlement-figures-for-the-quarterly-review-of-account-4471.txt"
    ).click()
    expect(page.locator("#document-text")).to_contain_text(SECRET_TEXT)
    _sign_out(page)
    page.go_back()
    # The browser asks again (no-store), and without a session that is the sign-in page.
    expect(page.locator('input[name="username"]')).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("settlement figure")
    page.screenshot(path=ARTIFACTS / "security-back-after-sign-out.png")
    page.context.close()


def test_the_policy_refuses_nothing_of_the_pages_own(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "alice")
    violations = _policy_violations(page)
    open_item(page, "outage-report.txt")
    page.keyboard.press("2")  # review.js still runs: the second queue is chosen
    expect(page.locator('input[name="label"][value="technical"]')).to_be_checked()
    with page.expect_response(lambda r: r.url.endswith("/document")) as framed:
        page.goto(review_ui + "/")
        page.get_by_role("link", name="scanned-letter.pdf").click()
    assert framed.value.status == 200
    expect(page.locator("iframe.pdf")).to_be_visible()
    page.wait_for_timeout(1000)  # the viewer loads in the frame
    page.screenshot(path=ARTIFACTS / "security-pdf-framed.png")
    page.goto(review_ui + "/dashboard")
    page.goto(review_ui + "/audit")
    assert violations == []
    page.context.close()


def test_a_sign_in_form_posted_from_another_site_is_refused(
    browser: Browser, review_ui: str
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(review_ui + "/login")  # the victim has the sign-in page open somewhere
    # Another site's page submits the form with the attacker's own account.
    page.set_content(
        f'<form method="post" action="{review_ui}/login">'
        '<input name="username" value="mallory">'
        f'<input name="password" value="{PASSWORD}">'
        '<button type="submit">Win a prize</button></form>'
    )
    with page.expect_navigation():
        page.get_by_role("button", name="Win a prize").click()
    expect(page.locator("body")).to_contain_text("came from another site")
    page.goto(review_ui + "/")
    expect(page).to_have_url(f"{review_ui}/login?next=/")  # not signed in as mallory
    context.close()


def test_an_attacker_is_slowed_and_sees_a_page_that_says_so(
    browser: Browser, review_ui: str
) -> None:
    page = browser.new_context().new_page()
    page.goto(review_ui + "/login")
    for _ in range(5):
        page.fill('input[name="username"]', "carol")
        page.fill('input[name="password"]', "not the password")
        page.keyboard.press("Enter")
        expect(page.locator(".error")).to_have_text("wrong user name or password")
    # The sixth attempt within a second of the fifth failure waits; on a loaded machine the
    # typing can take longer than the wait, which grows 1 s, 2 s, 4 s with each failure, so a
    # few more attempts may be needed to land inside it.
    statuses: list[int] = []
    for _ in range(5):
        page.fill('input[name="username"]', "carol")
        page.fill('input[name="password"]', "still not the password")
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.keyboard.press("Enter")
        statuses.append(answer.value.status)
        if answer.value.status == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) <= {401}, statuses
    assert int(answer.value.headers["retry-after"]) >= 1
    expect(page.locator(".error")).to_contain_text("too many failed sign-ins; please try again in")
    page.screenshot(path=ARTIFACTS / "security-slowed.png")
    page.context.close()


def test_x_forwarded_for_from_a_local_caller_is_not_believed(review_ui: str, stack: Stack) -> None:
    with httpx.Client(base_url=review_ui) as client:
        form = client.get("/login")
        token = form.text.split('name="csrf" value="')[1].split('"')[0]
        client.post(
            "/login",
            data={"username": "nobody", "password": "whatever it is", "csrf": token},
            headers={"X-Forwarded-For": "203.0.113.200"},
        )
    engine = create_engine(stack.database_url)
    with engine.begin() as conn:
        seen = conn.execute(
            text("SELECT remote_addr FROM login_attempt WHERE username = 'nobody'")
        ).scalars()
        assert list(seen) == ["127.0.0.1"]
    engine.dispose()


def test_an_admin_cannot_disable_their_own_account(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "root")
    page.get_by_role("link", name="Users").click()
    own = page.locator("tr", has_text="root")
    expect(own).to_contain_text("you")
    expect(own.get_by_role("button")).to_have_count(0)
    mallory = page.locator("tr", has_text="mallory")
    mallory.get_by_role("button", name="Disable").click()
    expect(page.locator("tr", has_text="mallory")).to_contain_text("disabled")
    page.locator("tr", has_text="mallory").get_by_role("button", name="Enable").click()
    expect(page.locator("tr", has_text="mallory")).to_contain_text("active")
    page.screenshot(path=ARTIFACTS / "security-users.png")
    page.context.close()


def _fits(page: Page, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{page.url} scrolls sideways: {scroll} px wide"
    sign_out = page.get_by_role("button", name="Sign out")
    box = sign_out.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    expect(sign_out).to_be_in_viewport()


def test_the_pages_fit_a_phone(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "root", width=390, height=844)
    _fits(page, 390)
    row = page.locator("tr", has_text="invoice-dispute.txt")
    row.get_by_role("link", name="invoice-dispute.txt").scroll_into_view_if_needed()
    expect(row.get_by_role("link", name="invoice-dispute.txt")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=ARTIFACTS / "review-queue-phone.png")
    row.get_by_role("link", name="invoice-dispute.txt").click()
    expect(page.locator("#document-text")).to_be_visible()
    _fits(page, 390)
    column = page.locator("#document-text").bounding_box()
    assert column is not None and column["width"] >= 300, column
    page.screenshot(path=ARTIFACTS / "review-item-phone.png")
    for path in ("/dashboard", "/audit", "/admin/users", "/items/4"):
        page.goto(review_ui + path)
        _fits(page, 390)
    page.goto(review_ui + "/")
    _sign_out(page)
    page.context.close()
