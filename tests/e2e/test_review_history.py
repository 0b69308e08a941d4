"""Undo, reopen, history with notes and comments, escalation and the dashboard, in Chromium.

A person's clicks on the real controls; screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import create_engine, text

from tests.e2e.reviewui import (
    ARTIFACTS,
    create_people,
    empty_review_tables,
    run_async,
    running_review_ui,
    signed_in,
)
from tests.helpers import classified
from tests.stack import Stack
from triage_contracts import utcnow
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import PRIORITY_NORMAL, ReviewReason, SendToReview

DUE_IN_HOURS = (5, 5, 5, 1, -1, -1, 5)
"""Item n+1 is due this many hours from now: item 4 is due soon, items 5 and 6 overdue."""


def _seed(database_url: str, blob_dir: Path) -> None:
    async def run() -> None:
        engine = make_async_engine(database_url)
        await create_people(engine)
        store = OutcomeStore(engine)
        blobs = LocalBlobStore(blob_dir)
        now = utcnow()
        for n, hours in enumerate(DUE_IN_HOURS):
            body = f"Letter {n}: the contract renewal and an invoice question."
            sha = blobs.put(body.encode())
            event = classified(sha256=sha, confidence=0.55, filename=f"doc-{n + 1}.txt")
            due = now + timedelta(hours=hours)
            await store.open_review(
                event, SendToReview(ReviewReason.LOW_CONFIDENCE, PRIORITY_NORMAL, due)
            )
        await engine.dispose()

    run_async(run)


def _sql(database_url: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    engine = create_engine(database_url)
    with engine.begin() as conn:
        result = conn.execute(text(sql), params)
        rows = [tuple(r) for r in result] if result.returns_rows else []
    engine.dispose()
    return rows


@pytest.fixture(scope="module")
def review_ui(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The review UI with seven items, two reviewers and an admin."""
    work = tmp_path_factory.mktemp("history")
    empty_review_tables(stack.database_url)
    _seed(stack.database_url, work / "blobs")
    with running_review_ui(stack, work, "history") as url:
        yield url


def _decide(page: Page, url: str, item_id: int, label: str, note: str = "") -> None:
    """Open an item, choose ``label``, write ``note`` and click Decide."""
    page.goto(f"{url}/items/{item_id}")
    page.locator(f'input[name="label"][value="{label}"]').check()
    if note:
        page.fill('textarea[name="note"]', note)
    page.locator("#decide button[type=submit]").click()
    expect(page).not_to_have_url(f"{url}/items/{item_id}")


def test_the_author_undoes_a_decision_within_the_window(browser: Browser, review_ui: str) -> None:
    alice = signed_in(browser, review_ui, "alice")
    _decide(alice, review_ui, 1, "legal", note="NDA attached, not an invoice")
    # On the next item, the decision just made can be undone.
    expect(alice.locator(".undo-last")).to_contain_text("You decided doc-1.txt as legal")
    alice.get_by_role("button", name="Undo that decision").click()
    expect(alice).to_have_url(f"{review_ui}/items/1")
    expect(alice.locator("#decide")).to_be_visible()  # to decide anew
    expect(alice.locator('.history-list li[data-action="undo"]')).to_contain_text(
        "undo of legal (decided by alice)"
    )
    _decide(alice, review_ui, 1, "billing", note="on second look: the invoice")
    alice.goto(f"{review_ui}/items/1")
    expect(alice.locator(".decided")).to_contain_text("billing")
    expect(alice.get_by_role("button", name="Undo my decision")).to_be_visible()
    # The history tells the whole story, notes included.
    decides = alice.locator('.history-list li[data-action="decide"]')
    expect(decides.nth(0)).to_contain_text("NDA attached, not an invoice")
    expect(decides.nth(1)).to_contain_text("on second look: the invoice")
    alice.locator(".decision").screenshot(path=ARTIFACTS / "review-history.png")


def test_undo_is_refused_after_the_window_and_to_someone_else(
    browser: Browser, review_ui: str, stack: Stack
) -> None:
    alice = signed_in(browser, review_ui, "alice")
    _decide(alice, review_ui, 2, "technical")
    bob = signed_in(browser, review_ui, "bob")
    bob.goto(f"{review_ui}/items/2")
    expect(bob.locator(".decided")).to_contain_text("technical by alice")
    expect(bob.get_by_role("button", name="Undo my decision")).to_have_count(0)
    # Bob's session posting alice's undo (his own CSRF token): refused, with a reason.
    token = bob.locator('form.comment input[name="csrf"]').input_value()
    refused = bob.request.post(f"{review_ui}/items/2/undo", form={"csrf": token})
    assert refused.status == 409
    assert "only alice may undo" in refused.text()
    # Alice left the page open past the window, then clicks Undo.
    alice.goto(f"{review_ui}/items/2")
    undo = alice.get_by_role("button", name="Undo my decision")
    expect(undo).to_be_visible()
    _sql(
        stack.database_url,
        "UPDATE review_item SET decided_at = decided_at - interval '11 minutes' WHERE id = 2",
    )
    undo.click()
    expect(alice.locator("main")).to_contain_text("ask an admin to reopen it")
    alice.goto(f"{review_ui}/items/2")
    expect(alice.get_by_role("button", name="Undo my decision")).to_have_count(0)
    expect(alice.get_by_role("button", name="Reopen for review")).to_have_count(0)
    assert _sql(stack.database_url, "SELECT status FROM review_item WHERE id = 2") == [("decided",)]


def test_an_admin_reopens_a_decided_item(browser: Browser, review_ui: str, stack: Stack) -> None:
    root = signed_in(browser, review_ui, "root")
    root.goto(f"{review_ui}/items/2")
    root.get_by_role("button", name="Reopen for review").click()
    expect(root).to_have_url(f"{review_ui}/items/2")
    expect(root.locator("#decide")).to_be_visible()
    expect(root.locator('.history-list li[data-action="reopen"]')).to_contain_text(
        "reopen of technical (decided by alice)"
    )
    assert _sql(
        stack.database_url,
        "SELECT o.kind, r.withdrawn_at IS NOT NULL FROM document_outcome o"
        " JOIN review_item i USING (document_id) JOIN routing_decision r USING (document_id)"
        " WHERE i.id = 2",
    ) == [("review", True)]
    root.goto(f"{review_ui}/audit")
    expect(root.locator("table").nth(1)).to_contain_text("reopen")


def test_comments_and_notes_show_in_the_history_and_the_audit_trail(
    browser: Browser, review_ui: str
) -> None:
    bob = signed_in(browser, review_ui, "bob")
    bob.goto(f"{review_ui}/items/3")
    bob.fill('textarea[name="body"]', "Same sender as <b>doc-1</b>; check with legal")
    bob.get_by_role("button", name="Add comment").click()
    comment = bob.locator('.history-list li[data-action="comment"]')
    expect(comment).to_contain_text("Same sender as <b>doc-1</b>; check with legal")  # as text
    expect(comment.locator("b")).to_have_count(0)
    alice = signed_in(browser, review_ui, "alice")
    alice.goto(f"{review_ui}/items/3")  # another reviewer sees it
    expect(alice.locator('.history-list li[data-action="comment"]')).to_contain_text("bob")
    expect(alice.locator('.history-list li[data-action="arrived"]')).to_contain_text("upload")
    expect(alice.locator('.history-list li[data-action="scored"]')).to_contain_text(
        "billing by tfidf-lr-test (champion)"
    )
    expect(alice.locator(".history-list")).not_to_contain_text("0.55")  # no confidence
    alice.goto(f"{review_ui}/audit")
    audit = alice.locator("table").nth(1)
    expect(audit).to_contain_text("on second look: the invoice")
    expect(audit).to_contain_text("Same sender as <b>doc-1</b>")


def test_escalation_is_flagged_found_by_the_filter_and_counted(
    browser: Browser, review_ui: str
) -> None:
    alice = signed_in(browser, review_ui, "alice")
    alice.goto(f"{review_ui}/items/5")
    alice.fill('input[name="reason"]', "customer chased twice; contract lapses Friday")
    alice.get_by_role("button", name="Escalate").click()
    expect(alice.locator(".escalated")).to_contain_text(
        "Escalated by alice: customer chased twice; contract lapses Friday"
    )
    expect(alice.get_by_role("button", name="Escalate")).to_have_count(0)
    alice.goto(f"{review_ui}/dashboard")
    # Open: items 1 (undone, then decided again: no), 2 (reopened), 3-7: six open.
    expect(alice.locator("#dash-open")).to_have_text("6")
    expect(alice.locator("#dash-escalated")).to_have_text("1")
    expect(alice.locator("#dash-due-soon")).to_have_text("1")  # item 4
    expect(alice.locator("#dash-overdue")).to_have_text("2")  # items 5 and 6
    alice.screenshot(path=ARTIFACTS / "review-dashboard-sla.png")
    alice.locator("#dash-escalated").click()
    rows = alice.locator("table.queue tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("doc-5.txt")


def test_the_per_hour_chart_shows_every_hour_with_zeros(
    browser: Browser, review_ui: str, stack: Stack
) -> None:
    # One decision five hours ago; the others were made in this test run (this hour).
    _sql(
        stack.database_url,
        "UPDATE review_item SET status = 'decided', decided_label = 'other',"
        " decided_by = 'bob', decided_at = now() - interval '5 hours' WHERE id = 7",
    )
    page = signed_in(browser, review_ui, "bob")
    page.goto(f"{review_ui}/dashboard")
    bars = page.locator("#per-hour g")
    expect(bars).to_have_count(24)
    hours = [int(h or -1) for h in bars.evaluate_all("gs => gs.map(g => g.dataset.hour)")]
    counts = [int(n or -1) for n in bars.evaluate_all("gs => gs.map(g => g.dataset.count)")]
    now_hour = utcnow().hour
    assert hours == [(now_hour - 23 + n) % 24 for n in range(24)]
    assert counts[-6] == 1  # five hours ago
    assert counts[-5:-1] == [0, 0, 0, 0]  # the empty hours between are there, at zero
    assert counts[-1] >= 1  # this hour's decisions
    assert (
        sum(counts)
        == _sql(
            stack.database_url,
            "SELECT count(*) FROM review_item"
            " WHERE decided_at >= date_trunc('hour', now()) - interval '23 hours'",
        )[0][0]
    )
    page.locator("#per-hour").screenshot(path=ARTIFACTS / "review-per-hour.png")
    page.screenshot(path=ARTIFACTS / "review-dashboard-hours.png")  # docs/images/
