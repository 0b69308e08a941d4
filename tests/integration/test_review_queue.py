"""The review queue's search, paging and "decide all matching" against real PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from tests.helpers import review_login
from tests.review_items import Seed, open_items
from tests.stack import Stack
from triage_review_ui.app import create_app
from triage_review_ui.documents import ItemDocuments
from triage_review_ui.search import ItemTexts
from triage_review_ui.settings import Settings
from triage_runtime.accounts.store import AuthStore
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.outcomes.search_text import ReviewTexts
from triage_runtime.outcomes.store import OutcomeStore
from triage_text.pool import ExtractionPool

PASSWORD = "correct horse battery"
HOSTILE = "Refund <mark>forged</mark> <script>alert(1)</script> for the invoice, please."
SEEDS = [
    Seed("The router firmware crashed twice after the update.", filename="crash.txt"),
    Seed(HOSTILE, filename="refund.txt"),
    Seed(
        "Hello, see below.",
        filename=None,
        subject="Contract renewal for Northwind",
        sender="dana@example.com",
    ),
    *(Seed(f"Routine letter number {n} about nothing much.") for n in range(4)),
]


def _seed(database_url: str, blob_dir: Path, seeds: list[Seed]) -> None:
    async def run() -> None:
        engine = make_async_engine(database_url)
        auth = AuthStore(engine)
        for name in ("alice", "bob"):
            await auth.create_user(name, PASSWORD, "reviewer")
        await open_items(OutcomeStore(engine), LocalBlobStore(blob_dir), seeds)
        await engine.dispose()

    asyncio.run(run())


def _settings(stack: Stack, database_url: str, blob_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        kafka_bootstrap=stack.kafka_bootstrap,
        topic_prefix=stack.topic_prefix,
        blob_dir=blob_dir,
        page_size=3,
        search_index_seconds=0.2,
    )


@pytest.fixture
def app_settings(isolated: Stack, clean_db: str, tmp_path: Path) -> Settings:
    _seed(clean_db, tmp_path / "blobs", SEEDS)
    return _settings(isolated, clean_db, tmp_path / "blobs")


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings)) as test_client:
        yield test_client


def _login(client: TestClient, user: str) -> str:
    return review_login(client, user, PASSWORD)


def _found(client: TestClient, words: str) -> list[str]:
    """Names of the items a search finds, once the background pass has indexed them."""
    deadline = time.monotonic() + 20
    while True:
        answer = client.get("/api/v1/review-items", params={"q": words, "limit": 50})
        assert answer.status_code == 200, answer.text
        names = [i["filename"] or i["email_subject"] for i in answer.json()["items"]]
        if names or time.monotonic() > deadline:
            return names
        time.sleep(0.2)


def test_search_finds_text_subject_and_sender_and_marks_matches_safely(
    client: TestClient,
) -> None:
    _login(client, "alice")
    assert _found(client, "crashes") == ["crash.txt"]  # stemmed: crashed ~ crashes
    assert _found(client, "northwind renewal") == ["Contract renewal for Northwind"]
    assert _found(client, "dana@example.com") == ["Contract renewal for Northwind"]
    assert _found(client, "invoice -refund") == []
    assert _found(client, '"firmware crashed"') == ["crash.txt"]
    assert client.get("/api/v1/review-items", params={"q": "nothing\x00"}).json()["matching"] == 0

    refund = client.get("/api/v1/review-items", params={"q": "invoice"}).json()["items"][0]
    page = client.get(f"/items/{refund['id']}", params={"q": "invoice forged"}).text
    shown = re.search(r'<pre class="text" id="document-text">(.*?)</pre>', page, re.S)
    assert shown, page
    assert shown.group(1) == (
        "Refund &lt;mark&gt;<mark>forged</mark>&lt;/mark&gt; &lt;script&gt;alert(1)&lt;/script&gt;"
        " for the <mark>invoice</mark>, please."
    )
    html = client.get("/", params={"q": "invoice"}).text
    assert f'href="/items/{refund["id"]}?q=invoice"' in html, "the item link keeps the search"


def test_the_json_api_pages_through_every_item(client: TestClient) -> None:
    _login(client, "alice")
    seen: list[int] = []
    url: str | None = "/api/v1/review-items?limit=2&sort=name"
    while url:
        page = client.get(url).json()
        assert page["total"] == len(SEEDS) and len(page["items"]) <= 2
        seen += [i["id"] for i in page["items"]]
        url = page["next"]
        assert url is None or "sort=name" in url, "the next link keeps the query"
    assert sorted(seen) == list(range(1, len(SEEDS) + 1)) and len(set(seen)) == len(seen)
    assert client.get("/api/v1/review-items", params={"limit": 501}).status_code == 422


def test_the_reason_filter_offers_only_reasons_items_can_have(client: TestClient) -> None:
    _login(client, "alice")
    page = client.get("/").text
    offered = re.findall(
        r'<option value="([a-z_]+)"', page.split('name="reason"')[1].split("</select>")[0]
    )
    assert "canary_disagreement" not in offered and "quality_sample" not in offered
    assert offered == ["low_confidence", "extraction_failed", "encrypted", "model_unavailable"]


def _decide_all(client: TestClient, csrf: str, confirm: int | None, **filters: Any) -> str:
    data: dict[str, Any] = {"csrf": csrf, "label": "legal"}
    if confirm is not None:
        data["confirm"] = confirm
    answer = client.post("/bulk-decide-matching", params=filters, data=data)
    assert answer.status_code == 200, answer.text
    return answer.text


def test_decide_all_matching_confirms_the_count_and_decides_each_once_under_a_race(
    app_settings: Settings,
) -> None:
    with (
        TestClient(create_app(app_settings)) as alice,
        TestClient(create_app(app_settings)) as bob,
    ):
        csrf = {"alice": _login(alice, "alice"), "bob": _login(bob, "bob")}
        asking = _decide_all(alice, csrf["alice"], None, q="letter")
        assert re.search(r'id="bulk-count">4<', asking), "four items match 'letter'"
        stale = _decide_all(alice, csrf["alice"], 3, q="letter")
        assert "it is now 4" in stale, "a count that changed is asked again, not decided"

        def both(client: TestClient, who: str) -> str:
            return _decide_all(client, csrf[who], 4, q="letter")

        with ThreadPoolExecutor(max_workers=2) as pool:
            pages = list(pool.map(both, (alice, bob), ("alice", "bob")))
    decided = [int(m.group(1)) for p in pages if (m := re.search(r"Decided (\d+) item", p))]
    assert sum(decided) == 4, pages
    engine = create_engine(app_settings.database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT status, decided_label, count(*) FROM review_item GROUP BY 1, 2")
        ).all()
        audit = conn.execute(
            text(
                "SELECT review_item_id, count(*) FROM audit_log WHERE action = 'decide' GROUP BY 1"
            )
        ).all()
    engine.dispose()
    assert sorted(map(tuple, rows)) == [("decided", "legal", 4), ("pending", None, 3)]
    assert len(audit) == 4 and all(n == 1 for _, n in audit), "each item decided once"


def test_indexing_twice_at_once_stores_each_text_once(
    stack: Stack, clean_db: str, tmp_path: Path
) -> None:
    _seed(clean_db, tmp_path / "blobs", SEEDS)

    async def run() -> list[int]:
        engine = make_async_engine(clean_db)
        blobs = LocalBlobStore(tmp_path / "blobs")
        async with ExtractionPool(workers=1) as pool:
            texts = [ItemTexts(ReviewTexts(engine), ItemDocuments(blobs, pool)) for _ in range(2)]
            counts = await asyncio.gather(*(t.index_pending(batch=2) for t in texts))
        await engine.dispose()
        return list(counts)

    counts = asyncio.run(run())
    assert sum(counts) == len(SEEDS), counts
    engine = create_engine(clean_db)
    with engine.connect() as conn:
        missing = conn.execute(
            text("SELECT count(*) FROM review_item WHERE search_text IS NULL")
        ).scalar_one()
    engine.dispose()
    assert missing == 0


def test_the_queue_form_sent_as_it_is_answers(client: TestClient) -> None:
    """Every field empty, as the Filter button sends them by default; bad values still refused."""
    _login(client, "alice")
    blank = {"q": "", "reason": "", "label": "", "source": "", "age": "", "sort": "", "dir": "asc"}
    page = client.get("/", params=blank)
    assert page.status_code == 200 and f"{len(SEEDS)} matching" in page.text
    assert client.get("/api/v1/review-items", params=blank).json()["matching"] == len(SEEDS)
    for age in ("-1", "abc", "nan", "inf"):
        refused = client.get("/api/v1/review-items", params={"age": age})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][-1] == "age"
    assert client.get("/", params={"sort": "nonsense"}).status_code == 422
