"""The review queue in a real browser: filters, search, sorting, pages, SLA marks and
"decide all matching", clicked and typed as a reviewer does (Chromium driven by Playwright).
"""

from __future__ import annotations

import re
import time
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
from tests.review_items import Seed, open_items
from tests.stack import Stack
from triage_contracts import SourceKind, utcnow
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason

NOW = utcnow()
LATER = NOW + timedelta(days=5)
SEEDS = [
    Seed(
        "Our invoice 4471 was charged twice; please refund the second payment.",
        filename=None,
        subject="Double charge on invoice 4471",
        sender="finance@northwind.example",
        source=SourceKind.IMAP,
        due_at=NOW - timedelta(minutes=30),
        received_at=NOW - timedelta(hours=30),
    ),
    Seed(
        "The login page rejects every password since this morning.",
        filename="login-broken.txt",
        due_at=NOW + timedelta(minutes=50),
        received_at=NOW - timedelta(hours=20),
    ),
    *(
        Seed(text, filename=name, reason=reason, due_at=LATER, received_at=NOW)
        for text, name, reason in (
            ("Scanned page.", "scan.pdf", ReviewReason.EXTRACTION_FAILED),
            ("Locked file.", "locked.pdf", ReviewReason.ENCRYPTED),
            ("No model.", "unscored.txt", ReviewReason.MODEL_UNAVAILABLE),
            ("A routed letter sampled for review.", "sampled.txt", ReviewReason.QUALITY_SAMPLE),
        )
    ),
    *(
        Seed(
            f"Quarterly newsletter {n}: nothing to action.",
            filename=f"newsletter-{n}.txt",
            due_at=NOW + timedelta(days=2, hours=n),
            received_at=NOW - timedelta(hours=12 + n),
        )
        for n in range(5)
    ),
]
OLDER_THAN_10H = 1 + 1 + 5  # the email, the login letter and the newsletters


def _seed(database_url: str, blob_dir: Path) -> None:
    async def run() -> None:
        engine = make_async_engine(database_url)
        await create_people(engine, [("carol", "reviewer")])
        await open_items(OutcomeStore(engine), LocalBlobStore(blob_dir), SEEDS)
        await engine.dispose()

    run_async(run)


def _wait_indexed(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        for _ in range(120):
            with engine.connect() as conn:
                left = conn.execute(
                    text(
                        "SELECT count(*) FROM review_item"
                        " WHERE extraction_status = 'ok' AND search_text IS NULL"
                    )
                ).scalar_one()
            if left == 0:
                return
            time.sleep(0.5)
        raise AssertionError("the review UI did not index the open items for search")
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def review_ui(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The review UI as a process, three items a page, with the seeds above."""
    work = tmp_path_factory.mktemp("queue-browser")
    empty_review_tables(stack.database_url)
    _seed(stack.database_url, work / "blobs")
    env = {"TRIAGE_REVIEW_UI_PAGE_SIZE": "3", "TRIAGE_REVIEW_UI_SEARCH_INDEX_SECONDS": "0.5"}
    with running_review_ui(stack, work, "queue-browser", env) as url:
        _wait_indexed(stack.database_url)
        yield url


def _names(page: Page) -> list[str]:
    return page.locator("table.queue a.filename").all_inner_texts()


def test_the_filter_button_works_with_every_control_at_its_default(
    browser: Browser, review_ui: str
) -> None:
    page = signed_in(browser, review_ui, "carol")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#matching")).to_have_text(f"{len(SEEDS)} matching")
    expect(page.locator("table.queue tbody tr")).to_have_count(3)


def test_every_page_and_sort_link_keeps_the_filters(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "carol")
    page.get_by_label("Older than (hours)").fill("10")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#matching")).to_have_text(f"{OLDER_THAN_10H} matching")
    page.get_by_role("link", name="later →").click()
    expect(page).to_have_url(re.compile(r"age=10"))
    expect(page.locator("#matching")).to_have_text(f"{OLDER_THAN_10H} matching")
    expect(page.get_by_label("Older than (hours)")).to_have_value("10")
    page.get_by_role("link", name="Document").click()  # sort by name
    expect(page).to_have_url(re.compile(r"age=10.*sort=name"))
    expect(page.locator("#matching")).to_have_text(f"{OLDER_THAN_10H} matching")
    assert _names(page) == ["Double charge on invoice 4471", "login-broken.txt", "newsletter-0.txt"]
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="3").click()
    expect(page).to_have_url(re.compile(r"age=10.*sort=name.*offset=6"))
    assert _names(page) == ["newsletter-4.txt"]
    page.get_by_role("link", name="Document ▲").click()  # the other way round
    expect(page).to_have_url(re.compile(r"dir=desc"))
    assert _names(page)[0] == "newsletter-4.txt"
    page.screenshot(path=ARTIFACTS / "queue-filtered-sorted.png")
    page.locator("a.count", has_text="low confidence").click()  # a count narrows, keeps the rest
    expect(page).to_have_url(re.compile(r"reason=low_confidence.*age=10"))
    expect(page.locator("#matching")).to_have_text(f"{OLDER_THAN_10H} matching")


def test_paging_past_the_end_says_so_and_nothing_else(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "carol")
    page.goto(review_ui + "/?offset=300")
    expect(page.locator("#past-end")).to_contain_text("is past the end")
    expect(page.locator("body")).not_to_contain_text("Nothing to review")
    page.get_by_role("link", name="Go to the last page").click()
    expect(page.locator("table.queue tbody tr")).to_have_count(len(SEEDS) % 3 or 3)


def test_decide_selected_with_nothing_ticked_says_what_to_do(
    browser: Browser, review_ui: str
) -> None:
    page = signed_in(browser, review_ui, "carol")
    page.get_by_role("button", name="Decide selected").click()
    expect(page.locator("#error-detail")).to_contain_text("No item was ticked")
    expect(page.locator("body")).not_to_contain_text("item_id")


def test_an_email_item_is_called_by_its_subject(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "carol")
    expect(page.locator("table.queue")).not_to_contain_text("(no name)")
    page.get_by_role("link", name="Double charge on invoice 4471").click()
    expect(page.locator("h1")).to_have_text("Double charge on invoice 4471")
    expect(page).to_have_title(re.compile("Double charge on invoice 4471"))


def test_every_reason_in_the_filter_finds_its_items(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "carol")
    reasons = page.locator('select[name="reason"] option').all_inner_texts()[1:]
    assert reasons, "the reason filter offers reasons"
    for reason in reasons:
        page.locator('select[name="reason"]').select_option(label=reason)
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("table.queue tbody tr").first).to_be_visible()
        for tag in page.locator("table.queue tbody .tag").all_inner_texts():
            assert tag == reason


def test_overdue_and_due_soon_are_marked_in_words(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "carol")
    overdue = page.locator("tr", has_text="Double charge on invoice 4471")
    expect(overdue.locator(".sla")).to_have_text("overdue")
    soon = page.locator("tr", has_text="login-broken.txt")
    expect(soon.locator(".sla")).to_have_text("due soon")
    page.screenshot(path=ARTIFACTS / "review-queue-sla.png")


def test_search_then_open_an_item_with_its_matches_marked(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "carol")
    box = page.get_by_label("Search text, subject and sender")
    box.fill("refund payment")
    box.press("Enter")
    expect(page.locator("#matching")).to_have_text("1 matching")
    assert _names(page) == ["Double charge on invoice 4471"]
    page.screenshot(path=ARTIFACTS / "review-queue-search.png")
    page.get_by_role("link", name="Double charge on invoice 4471").click()
    marks = page.locator("#document-text mark")
    expect(marks).to_have_text(["refund", "payment"])
    page.screenshot(path=ARTIFACTS / "review-item-search.png")
    page.goto(review_ui + "/")
    box = page.get_by_label("Search text, subject and sender")
    box.fill("finance@northwind.example")
    box.press("Enter")
    assert _names(page) == ["Double charge on invoice 4471"]


def test_decide_all_matching_asks_for_the_count_then_decides_them(
    browser: Browser, review_ui: str
) -> None:
    page = signed_in(browser, review_ui, "carol")
    box = page.get_by_label("Search text, subject and sender")
    box.fill("newsletter")
    box.press("Enter")
    expect(page.locator("#matching")).to_have_text("5 matching")
    page.get_by_label("Queue for the selected items").select_option("other")
    page.get_by_role("button", name="Decide all 5 matching…").click()
    expect(page.locator("#bulk-count")).to_have_text("5")
    page.screenshot(path=ARTIFACTS / "decide-all-matching.png")
    page.get_by_role("button", name="Decide 5 item(s) as other").click()
    expect(page.locator("#bulk-result")).to_contain_text("Decided 5 item(s)")
    page.goto(review_ui + "/")
    expect(page.locator("#total-open")).to_have_text(str(len(SEEDS) - 5))
