"""The item page's keys, claims and decision form in a real browser (Debian's Chromium driven
by Playwright), as a reviewer uses them: Tab from the page's start, Enter, the digit keys.

Each test opens its own items (the module seeds twelve), so the tests do not depend on order.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import create_engine, text

from tests.e2e.reviewui import (
    ARTIFACTS,
    PASSWORD,
    create_people,
    empty_review_tables,
    run_async,
    running_review_ui,
    signed_in,
)
from tests.helpers import RECEIVED_AT, classified, routed_item
from tests.stack import Stack
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason, RouteTo, RoutingPolicy, SendToReview, decide

ITEMS = 12
"""Low-confidence items 1..12 (mail-0.txt ..), then one quality sample (item 13), then one
item for each control Enter must leave alone (14..17, due last)."""
SAMPLE = ITEMS + 1
CONTROLS = {"Release": 14, "Download the original": 15, "Queue": 16, "Sign out": 17}


def _seed(database_url: str, blob_dir: Path) -> None:
    async def run() -> None:
        engine = make_async_engine(database_url)
        await create_people(engine)
        store = OutcomeStore(engine)
        blobs = LocalBlobStore(blob_dir)
        for n in range(ITEMS):
            body = f"Hello, question {n} about our invoice and the login page. Regards"
            sha = blobs.put(body.encode())
            event = classified(sha256=sha, confidence=0.55, filename=f"mail-{n}.txt")
            await store.open_review(
                event,
                # Due before the quality sample (received + the 4-hour SLA), in id order.
                SendToReview(
                    ReviewReason.LOW_CONFIDENCE, 2, RECEIVED_AT - timedelta(hours=ITEMS - n)
                ),
            )
        # A quality sample: routed to billing with confidence, and also in the queue, blind.
        invoice = b"Invoice 4411: the amount due is overdue, please pay the balance."
        sample = classified(sha256=blobs.put(invoice), label="billing", confidence=0.97)
        routing = decide(sample, RoutingPolicy(quality_sample=1.0))
        assert isinstance(routing, RouteTo) and routing.quality_sample is not None
        await store.apply_batch([(sample, routing, routed_item(sample, routing))])
        for n in range(len(CONTROLS)):
            control = f"Control {n}: the invoice for the login page.".encode()
            event = classified(sha256=blobs.put(control), confidence=0.55, threshold=0.9)
            await store.open_review(
                event,
                SendToReview(ReviewReason.LOW_CONFIDENCE, 2, RECEIVED_AT + timedelta(hours=9 + n)),
            )
        await engine.dispose()

    run_async(run)


@pytest.fixture(scope="module")
def work(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded items' blobs (the review tables emptied first)."""
    work = tmp_path_factory.mktemp("claims")
    empty_review_tables(stack.database_url)
    _seed(stack.database_url, work / "blobs")
    return work


@pytest.fixture(scope="module")
def review_ui(stack: Stack, work: Path) -> Iterator[str]:
    """The review UI as a process: a 3-second lease (a 1-second heartbeat), an extra queue."""
    env = {"TRIAGE_REVIEW_UI_LEASE_MINUTES": "0.05", "TRIAGE_REVIEW_UI_OTHER_QUEUES": '["fraud"]'}
    with running_review_ui(stack, work, "claims", env) as url:
        yield url


@pytest.fixture(scope="module")
def preselecting_ui(stack: Stack, work: Path) -> Iterator[str]:
    """The review UI on the same items with the model's label pre-selected, as it used to be."""
    env = {"TRIAGE_REVIEW_UI_PRESELECT": "true"}
    own = work / "preselect"  # its own log, the same blobs
    own.mkdir(exist_ok=True)
    (own / "blobs").symlink_to(work / "blobs")
    with running_review_ui(stack, own, "claims-preselect", env) as url:
        yield url


def _sql(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(database_url)
    with engine.begin() as conn:
        result = conn.execute(text(sql), params)
        rows = [tuple(r) for r in result] if result.returns_rows else []
    engine.dispose()
    return rows


def _item(database_url: str, item_id: int) -> tuple[Any, ...]:
    [row] = _sql(
        database_url,
        "SELECT status, claimed_by, decided_label, decision_kind, note FROM review_item"
        " WHERE id = :id",
        id=item_id,
    )
    return row


def _focused(page: Page) -> str:
    """The focused element as a person reads it: its text, or its input's value."""
    return str(
        page.evaluate(
            "() => { const e = document.activeElement;"
            " return e ? (e.value && e.tagName === 'INPUT' ? e.value : e.innerText || '') : ''; }"
        )
    ).strip()


def _tab_to(page: Page, name: str, limit: int = 60) -> None:
    """Press Tab from where the focus is until the control reading ``name`` has it."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if _focused(page).startswith(name):
            return
    raise AssertionError(f"Tab never reached {name!r}")


@pytest.mark.parametrize("control", CONTROLS)
def test_enter_on_a_link_or_button_does_that_and_never_decides(
    browser: Browser, preselecting_ui: str, stack: Stack, control: str
) -> None:
    url, item = preselecting_ui, CONTROLS[control]
    page = signed_in(browser, url, "alice")
    page.goto(f"{url}/items/{item}")
    expect(page.locator('input[value="billing"]')).to_be_checked()  # the model's guess
    if control == "Release":
        page.keyboard.press("c")  # claim it, so the page has a Release button
        expect(page.locator(".claim")).to_contain_text("Claimed by you")
        page.goto(f"{url}/items/{item}")  # back at the page's start
    if control.startswith("Download"):
        with page.expect_download() as download:
            _tab_to(page, control)
            page.keyboard.press("Enter")
        assert download.value.suggested_filename == f"document-{item}"
    else:
        _tab_to(page, control)
        page.keyboard.press("Enter")
        expect(page).to_have_url(f"{url}/login" if control == "Sign out" else f"{url}/")
    page.goto(f"{url}/audit")  # anything an Enter sent has landed by now
    status, holder, label, *_ = _item(stack.database_url, item)
    assert (status, label) != ("decided", "billing"), f"Enter on {control} decided the item"
    if control == "Release":
        assert (status, holder) == ("pending", None), "released"


def test_keys_choose_and_enter_decides_when_the_focus_is_on_the_page(
    browser: Browser, review_ui: str, stack: Stack
) -> None:
    page = signed_in(browser, review_ui, "alice")
    page.goto(f"{review_ui}/items/2")
    expect(page.locator('input[name="label"]:checked')).to_have_count(0)  # no answer suggested
    page.click("textarea[name=note]")
    page.keyboard.type("j 3 notes")  # typing in the note is typing, not keys
    expect(page).to_have_url(f"{review_ui}/items/2")
    page.locator("h1").first.click()  # the focus back on the page
    page.keyboard.press("3")
    expect(page.locator('input[value="legal"]')).to_be_checked()
    expect(page.locator("#claim-line")).to_contain_text("Claimed by you")
    expect(page.locator("#release-form button")).to_be_visible()
    expect(page.locator("#claim-button")).to_be_hidden()
    page.screenshot(path=ARTIFACTS / "claims-item.png")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{review_ui}/items/3")
    assert _item(stack.database_url, 2) == ("decided", "alice", "legal", "label", "j 3 notes")


def test_the_shortcuts_overlay_opens_with_question_mark_and_keeps_the_focus(
    browser: Browser, review_ui: str
) -> None:
    page = signed_in(browser, review_ui, "alice")
    page.goto(f"{review_ui}/items/3")
    overlay = page.locator("#shortcuts")
    expect(overlay).to_be_hidden()
    page.keyboard.press("?")
    expect(overlay).to_be_visible()
    for key in ("1", "Enter", "c", "s", "j", "Esc"):
        expect(overlay).to_contain_text(key)
    page.screenshot(path=ARTIFACTS / "claims-shortcuts.png")
    for _ in range(3):
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.closest('#shortcuts') !== null")
    page.keyboard.press("3")  # no key acts behind the overlay
    expect(page.locator('input[value="legal"]')).not_to_be_checked()
    page.keyboard.press("Escape")
    expect(overlay).to_be_hidden()
    # A keyboard user finds it by Tab too: the "All shortcuts" button.
    page.goto(f"{review_ui}/items/3")
    _tab_to(page, "All shortcuts")
    page.keyboard.press("Enter")
    expect(overlay).to_be_visible()
    page.keyboard.press("Escape")
    expect(overlay).to_be_hidden()
    assert _focused(page).startswith("All shortcuts"), "the focus goes back where it was"


def test_a_decision_interrupted_by_the_session_ending_is_kept_through_sign_in(
    browser: Browser, review_ui: str, stack: Stack
) -> None:
    page = signed_in(browser, review_ui, "bob")
    page.goto(f"{review_ui}/items/4")
    page.keyboard.press("3")
    page.click("textarea[name=note]")
    page.keyboard.type("An NDA, not an invoice")
    _sql(
        stack.database_url,
        "UPDATE web_session SET expires_at = now() - interval '1 second'"
        " WHERE user_id = (SELECT id FROM app_user WHERE username = 'bob')",
    )
    page.click("#decide button[type=submit]")
    expect(page.locator("#draft-kept")).to_be_visible()
    page.fill('input[name="username"]', "bob")
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    expect(page).to_have_url(f"{review_ui}/items/4")
    expect(page.locator("#draft-notice")).to_be_visible()
    expect(page.locator('input[value="legal"]')).to_be_checked()
    expect(page.locator("textarea[name=note]")).to_have_value("An NDA, not an invoice")
    page.screenshot(path=ARTIFACTS / "claims-restored.png")
    assert _item(stack.database_url, 4)[0] != "decided", "not saved until bob says so"
    page.locator("h1").first.click()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{review_ui}/items/5")
    assert _item(stack.database_url, 4)[2:] == ("legal", "label", "An NDA, not an invoice")
    # A POST-only address opened in the browser leads to the item, not a 405.
    page.goto(f"{review_ui}/items/6/decide")
    expect(page).to_have_url(f"{review_ui}/items/6")


def test_an_open_page_renews_its_claim_and_a_lapse_costs_nothing_unless_taken(
    browser: Browser, review_ui: str, stack: Stack
) -> None:
    alice = signed_in(browser, review_ui, "alice")
    bob = signed_in(browser, review_ui, "bob")
    alice.goto(f"{review_ui}/items/7")
    alice.keyboard.press("1")
    expect(alice.locator(".claim")).to_contain_text("Claimed by you")
    time.sleep(5)  # longer than the 3-second lease: the open page renews it
    bob.goto(f"{review_ui}/items/7")
    expect(bob.locator("#claim-line")).to_contain_text("alice is working on this item")
    # The claim lapses (the laptop slept) and nobody takes it: deciding still works.
    _sql(
        stack.database_url,
        "UPDATE review_item SET claimed_until = now() - interval '1 minute' WHERE id = 7",
    )
    alice.keyboard.press("Enter")
    expect(alice).to_have_url(f"{review_ui}/items/8")
    assert _item(stack.database_url, 7)[:3] == ("decided", "alice", "billing")
    # Lapsed and taken by bob: alice is told who has it, and nothing is saved.
    alice.keyboard.press("2")
    expect(alice.locator("#claim-line")).to_contain_text("Claimed by you")
    _sql(
        stack.database_url,
        "UPDATE review_item SET claimed_by = 'bob', claimed_until = now() + interval '1 hour'"
        " WHERE id = 8",
    )
    alice.keyboard.press("Enter")
    expect(alice.locator("#conflict-detail")).to_contain_text("bob holds this item")
    alice.screenshot(path=ARTIFACTS / "claims-taken.png")
    assert _item(stack.database_url, 8)[:3] == ("claimed", "bob", None)


def test_a_stale_tab_gets_already_decided_by_whom_as_what(
    browser: Browser, review_ui: str, stack: Stack
) -> None:
    stale = signed_in(browser, review_ui, "alice")
    stale.goto(f"{review_ui}/items/9")
    fresh = stale.context.new_page()
    fresh.goto(f"{review_ui}/items/9")
    fresh.keyboard.press("2")
    fresh.keyboard.press("Enter")
    expect(fresh).to_have_url(f"{review_ui}/items/10")
    stale.bring_to_front()
    stale.keyboard.press("1")
    stale.keyboard.press("Enter")
    detail = stale.locator("#conflict-detail")
    expect(detail).to_contain_text("already decided by alice as technical")
    stale.screenshot(path=ARTIFACTS / "claims-already-decided.png")
    stale.click("#conflict-next")
    expect(stale).to_have_url(f"{review_ui}/items/10")
    assert _item(stack.database_url, 9)[2] == "technical"


def test_looking_claims_nothing_and_an_admin_assigns_and_releases(
    browser: Browser, review_ui: str, stack: Stack
) -> None:
    audit_before = _sql(stack.database_url, "SELECT count(*) FROM audit_log")
    page = signed_in(browser, review_ui, "bob")
    page.goto(f"{review_ui}/items/10")
    for following in (11, 12, SAMPLE):
        page.keyboard.press("j")
        expect(page).to_have_url(f"{review_ui}/items/{following}")
    claimed = _sql(
        stack.database_url,
        "SELECT count(*) FROM review_item WHERE status = 'claimed' AND claimed_until > now()",
    )
    assert claimed == [(1,)], "only item 8, which bob holds; browsing claimed nothing"
    sign_ins = 1
    assert _sql(stack.database_url, "SELECT count(*) FROM audit_log") == [
        (audit_before[0][0] + sign_ins,)
    ]
    admin = signed_in(browser, review_ui, "root")
    admin.goto(f"{review_ui}/items/8")
    expect(admin.locator("#admin-claim")).to_contain_text("Release bob's claim")
    admin.select_option("select[name=to]", "alice")
    admin.screenshot(path=ARTIFACTS / "claims-admin.png")
    admin.click("#admin-claim .assign button")
    expect(admin.locator("#claim-line")).to_contain_text("alice is working on this item")
    admin.click("text=Release alice's claim")
    expect(admin.locator("#claim-line")).to_contain_text("Not claimed")
    assert _sql(
        stack.database_url,
        "SELECT action, detail->>'holder', detail->>'to' FROM audit_log"
        " WHERE actor = 'root' AND action <> 'login' ORDER BY id",
    ) == [("assign", "bob", "alice"), ("release_claim", "alice", None)]


def test_spam_another_queue_and_skip(browser: Browser, review_ui: str, stack: Stack) -> None:
    page = signed_in(browser, review_ui, "alice")
    page.goto(f"{review_ui}/items/11")
    page.keyboard.press("5")  # after the four labels: the other queue, fraud
    expect(page.locator('input[value="fraud"]')).to_be_checked()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{review_ui}/items/12")
    page.click("text=Spam")
    page.click("#decide button[type=submit]")
    expect(page).to_have_url(f"{review_ui}/items/{SAMPLE}")
    page.goto(f"{review_ui}/items/10")
    page.keyboard.press("c")
    expect(page.locator("#claim-line")).to_contain_text("Claimed by you")
    page.keyboard.press("s")
    expect(page).to_have_url(f"{review_ui}/items/{SAMPLE}")  # the next open one
    assert _item(stack.database_url, 11)[2:4] == ("fraud", "queue")
    assert _item(stack.database_url, 12)[2:4] == (None, "spam")
    assert _item(stack.database_url, 10)[:3] == ("pending", None, None), "skipped: left open"
    assert _sql(
        stack.database_url,
        "SELECT kind, queue FROM document_outcome o JOIN review_item i"
        " USING (document_id) WHERE i.id IN (11, 12) ORDER BY i.id",
    ) == [("routed", "fraud"), ("discarded", None)]


def test_a_reviewer_overrules_a_quality_sample_with_tab_and_enter(
    browser: Browser, review_ui: str, stack: Stack
) -> None:
    page = signed_in(browser, review_ui, "alice")
    page.goto(f"{review_ui}/items/{SAMPLE}")
    expect(page.locator(".tag")).to_have_text("low confidence")  # blind
    _tab_to(page, "billing")  # the first choice; none is chosen
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(page.locator('input[value="legal"]')).to_be_checked()
    _tab_to(page, "Decide")
    page.keyboard.press("Enter")
    expect(page).not_to_have_url(f"{review_ui}/items/{SAMPLE}")
    assert _item(stack.database_url, SAMPLE)[:4] == ("decided", "alice", "legal", "label")
    [document] = _sql(
        stack.database_url, f"SELECT document_id FROM review_item WHERE id = {SAMPLE}"
    )
    assert _sql(
        stack.database_url,
        "SELECT queue, decided_by, withdrawn_at IS NULL FROM routing_decision"
        " WHERE document_id = :doc",
        doc=document[0],
    ) == [("legal", "human", True)]
    withdrawn = _sql(
        stack.database_url,
        "SELECT topic FROM outbox WHERE schema = 'DocumentWithdrawn' AND document_id = :doc",
        doc=document[0],
    )
    assert len(withdrawn) == 1 and withdrawn[0][0].endswith("triage.routed.billing.v1")
