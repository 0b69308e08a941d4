"""An email's parts in a real browser: the queue shows subject and sender; an attachment's
item links to its mail and its sibling parts, followed with Tab and Enter as a reviewer does;
the pages still fit a phone."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.reviewui import (
    ARTIFACTS,
    create_people,
    empty_review_tables,
    open_item,
    run_async,
    running_review_ui,
    signed_in,
)
from tests.helpers import REPO_ROOT
from tests.review_items import Seed, open_items, route_seeded
from tests.stack import Stack
from triage_contracts import SourceKind, utcnow
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.outcomes.store import OutcomeStore

NOW = utcnow()
INVOICE_MAIL = "Invoice 4471 & the signed contract"
STATEMENT_MAIL = "Statement for November"


def _seed(n: int, name: str | None, subject: str, sender: str, parent: int | None) -> Seed:
    return Seed(
        f"Part {n}: {name or 'the body'} of {subject}.",
        filename=name,
        subject=subject,
        sender=sender,
        source=SourceKind.IMAP,
        received_at=NOW - timedelta(hours=1, seconds=-n),
        due_at=NOW + timedelta(hours=4, minutes=n),
        part=str(n) if parent else "body",
        document_id=f"doc_{n:032x}",
        parent=f"doc_{parent:032x}" if parent else None,
    )


DANA = "Dana Reyes <dana@northwind.example>"
BANK = "statements@bank.example"
ROUTED_BODY = _seed(1, None, INVOICE_MAIL, DANA, None)
IN_REVIEW = [
    _seed(2, "invoice-4471.txt", INVOICE_MAIL, DANA, 1),
    _seed(3, "contract.txt", INVOICE_MAIL, DANA, 1),
    _seed(11, None, STATEMENT_MAIL, BANK, None),
    _seed(12, "statement.csv", STATEMENT_MAIL, BANK, 11),
]


@pytest.fixture(scope="module")
def review_ui(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("mail-browser")
    empty_review_tables(stack.database_url)

    async def seed() -> None:
        engine = make_async_engine(stack.database_url)
        await create_people(engine, [("carol", "reviewer")])
        store, blobs = OutcomeStore(engine), LocalBlobStore(work / "blobs")
        await route_seeded(store, blobs, engine, ROUTED_BODY, "billing")
        await open_items(store, blobs, IN_REVIEW, engine)
        await engine.dispose()

    run_async(seed)
    with running_review_ui(stack, work, "mail-browser") as url:
        yield url


def _tab_to(page: Page, name: str) -> None:
    """Press Tab until the focused control is the link called ``name``."""
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == name:
            return
    raise AssertionError(f"Tab never reached the link {name!r}")


def test_the_queue_shows_each_mails_subject_and_sender(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "carol")
    row = page.locator("tr", has_text="invoice-4471.txt")
    expect(row.locator(".mail-line")).to_have_text(f"“{INVOICE_MAIL}” from {DANA}")
    body = page.locator("tr", has_text=STATEMENT_MAIL).first
    expect(body.get_by_role("link", name=STATEMENT_MAIL)).to_be_visible()
    expect(body.locator(".mail-line")).to_have_text(f"from {BANK}")  # its name is the subject
    page.screenshot(path=ARTIFACTS / "review-queue-mail.png")


def test_an_attachment_shows_its_routed_mail_and_tab_enter_opens_a_sibling(
    browser: Browser, review_ui: str
) -> None:
    page = signed_in(browser, review_ui, "carol")
    open_item(page, "invoice-4471.txt")
    expect(page.locator(".meta.email")).to_contain_text("part 2")
    mail = page.locator("section.mail")
    body = mail.locator("#mail-body")
    expect(body).to_contain_text(f"Body of “{INVOICE_MAIL}”")
    expect(body).to_contain_text("routed to billing")
    expect(body.get_by_role("link")).to_have_count(0)  # routed: no item to link to
    siblings = mail.get_by_role("list", name="Other parts of the mail")
    expect(siblings.get_by_role("listitem")).to_have_count(1)
    expect(siblings).to_contain_text("contract.txt")
    expect(siblings).to_contain_text("in review")
    page.screenshot(path=ARTIFACTS / "review-item-mail.png")
    shutil.copy(ARTIFACTS / "review-item-mail.png", REPO_ROOT / "docs/images/review-item-mail.png")
    _tab_to(page, "contract.txt")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("contract.txt")
    expect(page.locator(".meta.email")).to_contain_text("part 3")
    back = page.locator("section.mail").get_by_role("link", name="invoice-4471.txt")
    expect(back).to_be_visible()


def test_tab_enter_goes_from_an_attachment_to_its_mails_body_and_back(
    browser: Browser, review_ui: str
) -> None:
    page = signed_in(browser, review_ui, "carol")
    open_item(page, "statement.csv")
    _tab_to(page, f"Body of “{STATEMENT_MAIL}”")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/items/\d+$"))
    expect(page.locator("h1")).to_have_text(STATEMENT_MAIL)
    mail = page.locator("section.mail")
    expect(mail.get_by_role("heading")).to_have_text("Parts of this mail")
    _tab_to(page, "statement.csv")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("statement.csv")


def test_the_mail_pages_fit_a_phone(browser: Browser, review_ui: str) -> None:
    page = signed_in(browser, review_ui, "carol", width=390, height=844)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    expect(page.locator("tr", has_text="invoice-4471.txt").locator(".mail-line")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "review-queue-mail-phone.png")
    open_item(page, "invoice-4471.txt")
    link = page.locator("section.mail").get_by_role("link", name="contract.txt")
    link.scroll_into_view_if_needed()
    expect(link).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=ARTIFACTS / "review-item-mail-phone.png")
