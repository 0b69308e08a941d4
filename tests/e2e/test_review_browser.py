"""The review UI in a real browser (Debian's Chromium driven by Playwright).

Screenshots of each step go to ``test-artifacts/`` (kept by CI as artifacts).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.reviewui import (
    ARTIFACTS,
    create_people,
    empty_review_tables,
    open_item,
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


def _seed(database_url: str, blob_dir: Path) -> None:
    async def run() -> None:
        engine = make_async_engine(database_url)
        await create_people(engine)
        store = OutcomeStore(engine)
        blobs = LocalBlobStore(blob_dir)
        for n in range(6):
            text = f"Hello, question {n} about our invoice and the login page. Regards"
            sha = blobs.put(text.encode())
            event = classified(sha256=sha, confidence=0.55, filename=f"mail-{n}.txt")
            await store.open_review(
                event,
                SendToReview(ReviewReason.LOW_CONFIDENCE, 2, RECEIVED_AT + timedelta(hours=n)),
            )
        await engine.dispose()

    run_async(run)


@pytest.fixture(scope="module")
def review_ui(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The review UI as a process, with six items, two reviewers and an admin."""
    work = tmp_path_factory.mktemp("browser")
    empty_review_tables(stack.database_url)
    _seed(stack.database_url, work / "blobs")
    lease = {"TRIAGE_REVIEW_UI_LEASE_MINUTES": "0.05"}  # 3 s, so lease expiry is testable
    with running_review_ui(stack, work, "browser", lease) as url:
        yield url


def test_login_claim_and_decide_by_keyboard(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "alice")
    page.screenshot(path=ARTIFACTS / "queue.png")
    open_item(page, "mail-0.txt")
    expect(page.locator("#decide")).to_be_visible()
    page.keyboard.press("3")  # the third queue: legal, which claims the item
    expect(page.locator('input[name="label"][value="legal"]')).to_be_checked()
    expect(page.locator(".claim")).to_contain_text("Claimed by you")
    page.screenshot(path=ARTIFACTS / "item.png")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{review_ui}/items/2")  # on to the next item
    page.goto(review_ui + "/audit")
    expect(page.locator("table").nth(1)).to_contain_text("decide")
    page.goto(review_ui + "/dashboard")
    expect(page.locator("#dash-open")).to_have_text("5")
    page.screenshot(path=ARTIFACTS / "dashboard.png")


def test_bulk_decide_from_the_queue(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "bob")
    boxes = page.locator('input[name="item_id"]')
    boxes.nth(2).check()
    boxes.nth(3).check()
    page.select_option('select[name="label"]', "technical")
    page.click("text=Decide selected")
    expect(page.locator("#bulk-result")).to_contain_text("Decided 2 item(s)")
    page.screenshot(path=ARTIFACTS / "bulk.png")


def test_a_lease_expires_and_another_reviewer_can_take_the_item(
    browser: Browser, review_ui: str
) -> None:
    alice = signed_in(browser, review_ui, "alice")
    bob = signed_in(browser, review_ui, "bob")
    alice.goto(review_ui + "/items/6")
    alice.keyboard.press("c")
    expect(alice.locator(".claim")).to_contain_text("Claimed by you")
    bob.goto(review_ui + "/items/6")
    expect(bob.locator(".error")).to_contain_text("alice is working on this item")
    alice.goto(review_ui + "/")  # her open page renewed the claim; now nothing does
    time.sleep(3.5)  # the 3-second lease runs out
    bob.goto(review_ui + "/items/6")
    bob.keyboard.press("c")
    expect(bob.locator(".claim")).to_contain_text("Claimed by you")
    bob.screenshot(path=ARTIFACTS / "lease-taken-over.png")


def test_a_reviewer_is_refused_admin_pages(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "alice")
    response = page.goto(review_ui + "/admin/users")
    assert response is not None and response.status == 403
    expect(page.locator("body")).to_contain_text("your role does not allow this")
    page.screenshot(path=ARTIFACTS / "refused.png")


def _decided_samples(database_url: str) -> dict[str, tuple[int, int]]:
    """Route 40 documents with every one in the quality sample, and record reviewers'
    decisions on them (billing: 18 of 20 kept; legal: 12 of 20); (agreed, decided) by label."""

    async def run() -> None:
        engine = make_async_engine(database_url)
        store = OutcomeStore(engine)
        everything = RoutingPolicy(quality_sample=1.0)
        batch = []
        for n in range(40):
            event = classified(
                sha256=f"{n + 1000:064x}", label="billing" if n < 20 else "legal", confidence=0.97
            )
            decision = decide(event, everything)
            assert isinstance(decision, RouteTo) and decision.quality_sample is not None
            batch.append((event, decision, routed_item(event, decision)))
        await store.apply_batch(batch)
        await engine.dispose()

    run_async(run)
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.begin() as conn:
        ids = conn.execute(
            text(
                "SELECT id, predicted_label FROM review_item WHERE reason = 'quality_sample'"
                " ORDER BY id"
            )
        ).all()
        overruled = {"billing": 2, "legal": 8}
        for item_id, label in ids:
            chosen = "other" if overruled[label] > 0 else label
            overruled[label] -= 1
            conn.execute(
                text(
                    "UPDATE review_item SET status = 'decided', decided_label = :chosen,"
                    " decided_by = 'alice', decided_at = now() WHERE id = :id"
                ),
                {"chosen": chosen, "id": item_id},
            )
    engine.dispose()
    return {"billing": (18, 20), "legal": (12, 20)}


def test_admins_see_live_precision_per_queue_and_reviewers_do_not(
    browser: Browser, review_ui: str, stack: Stack
) -> None:
    counts = _decided_samples(stack.database_url)
    reviewer = signed_in(browser, review_ui, "alice")
    reviewer.goto(review_ui + "/dashboard")
    expect(reviewer.locator("#dash-open")).to_be_visible()
    expect(reviewer.locator("#live-precision")).to_have_count(0)
    admin = signed_in(browser, review_ui, "root")
    admin.goto(review_ui + "/dashboard")
    chart = admin.locator("#live-precision")
    expect(chart).to_be_visible()
    for label, (agreed, decided) in counts.items():
        row = admin.locator(f'#live-precision-table tr[data-label="{label}"]')
        expect(row).to_contain_text(f"{100 * agreed / decided:.1f}%")
    # Legal's 60 % on 20 decisions: its whole interval is under the 95 % target.
    expect(admin.locator('#live-precision-table tr[data-label="legal"]')).to_contain_text(
        "below target"
    )
    chart.scroll_into_view_if_needed()
    admin.screenshot(path=ARTIFACTS / "live-precision.png", full_page=True)
