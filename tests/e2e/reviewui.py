"""The review UI as a real process, and a real Chromium to drive it, for browser tests.

Each browser test module seeds its own items and starts its own review UI with
``running_review_ui``; the ``browser`` fixture (tests/e2e/conftest.py) is one Chromium per
module. Screenshots go to ``test-artifacts/`` (kept by CI as artifacts).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import REPO_ROOT, free_port
from tests.stack import Stack, create_declared_topics
from triage_runtime.accounts.store import AuthStore

PASSWORD = "browser test password"
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REVIEW_TABLES = (
    "review_item, routing_decision, document, web_session, login_attempt, audit_log, app_user,"
    " document_outcome"
)


TEAM = (("alice", "reviewer"), ("bob", "reviewer"), ("root", "admin"))
"""The people most browser tests sign in as: two reviewers and an admin."""


async def create_people(engine: AsyncEngine, people: Iterable[tuple[str, str]] = TEAM) -> None:
    """Create each (name, role) as a user with the browser tests' password."""
    auth = AuthStore(engine)
    for name, role in people:
        await auth.create_user(name, PASSWORD, role)


def run_async(work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``work()`` to the end. Playwright's sync API keeps an event loop in the test's
    thread, so the coroutine runs in another one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, work()).result()


def empty_review_tables(database_url: str) -> None:
    """Remove every review item, document, user, session and audit row."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {REVIEW_TABLES} RESTART IDENTITY CASCADE"))
    engine.dispose()


@contextmanager
def running_review_ui(
    stack: Stack, work: Path, name: str, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """The review UI as a process on ``stack`` with blobs in ``work/blobs``; yields its URL.

    ``name`` keeps its topics apart from other modules'; ``env`` adds or overrides settings.
    """
    port = free_port()
    create_declared_topics(stack.kafka_bootstrap, f"{stack.topic_prefix}{name}.")
    full_env = {
        **os.environ,
        "TRIAGE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "TRIAGE_DATABASE_URL": stack.database_url,
        "TRIAGE_TOPIC_PREFIX": f"{stack.topic_prefix}{name}.",
        "TRIAGE_BLOB_DIR": str(work / "blobs"),
        "TRIAGE_REVIEW_UI_PORT": str(port),
        **(env or {}),
    }
    triage = shutil.which("triage", path=str(Path(sys.executable).parent)) or "triage"
    with (work / "review-ui.log").open("wb") as log:
        process = subprocess.Popen([f"{triage}-review-ui"], env=full_env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def open_item(page: Page, name: str) -> None:
    """Click the queue's link to the item named ``name`` and wait until its page has loaded,
    its script included (a key pressed earlier would reach the queue page instead)."""
    page.get_by_role("link", name=name).first.click()
    expect(page).to_have_url(re.compile(r"/items/\d+(\?.*)?$"))
    page.wait_for_load_state("load")


def signed_in(
    browser: Browser, url: str, user: str, *, width: int = 1280, height: int = 800
) -> Page:
    """A new browser context signed in as ``user`` through the login form, on the queue."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.goto(url + "/")
    expect(page).to_have_url(f"{url}/login?next=/")
    page.fill('input[name="username"]', user)
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    expect(page.locator("#total-open")).to_be_visible()
    return page
