"""Review queue benchmark: how long a page of the queue takes with 100,000 pending items.

Fills a throwaway database with pending review items (each with 40 words of text from a
200-word vocabulary, as the review UI stores it for search), signs in to the review UI (in
process, against the local stack's Kafka) and times the queue page, filtered, sorted and
searched pages, the JSON API and the dashboard. Prints one table (median, p95, max).

    uv run python -m bench.review_queue_bench [--items 100000] [--repeat 40]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from bench._common import scratch_database, stack_env
from tests.helpers import review_sign_in
from triage_review_ui.app import create_app
from triage_review_ui.settings import Settings
from triage_runtime.accounts.store import AuthStore
from triage_runtime.db.engine import make_async_engine, upgrade

PASSWORD = "benchmark password"  # noqa: S105 - a throwaway user in a throwaway database
# The bench documents' words: each document has 40 different ones of these 176, so a word is
# in about 23% of documents; the table's search rows say how many items each search matches.
VOCABULARY = """
account address agreement amount annual api application approval attached audit backup balance
bank billing breach browser budget bug cancel card certificate charge claim client cloud code
compliance confidential configuration confirm connection consent contract copy correction credit
crash customer damage data database deadline debit delay delivery deposit device discount dispute
document domain download draft due email error escalation estimate expense expiry export failure
fee file finance firewall firmware form fraud gateway guarantee hardware help identity incident
indemnity insurance integration invoice issue jurisdiction key late lawsuit lease legal liability
licence limit login loss maintenance manual merger migration mobile network notice obligation
offer order outage overdue owner package partner password patch payment penalty pension permit
plan policy portal price privacy procedure product profile proposal provider purchase quota quote
receipt record refund regulation reimbursement release renewal report request restore retention
return review risk router salary schedule screen server service settlement signature software
statement storage subscription supplier support suspend tax terminal termination test ticket
timeout token trademark transfer trial update upgrade usage user vendor version virus voucher
warranty website withdrawal workflow
"""
WORDS = VOCABULARY.split()


def fill(database_url: str, count: int) -> float:
    """Insert ``count`` pending review items with generate_series; return seconds taken."""
    started = time.perf_counter()
    engine = create_engine(database_url)
    with engine.begin() as conn:
        # Every review item has its document's outcome (a foreign key since migration 0010).
        conn.execute(
            text(
                "INSERT INTO document_outcome (document_id, kind, model_version)"
                " SELECT 'doc_' || lpad(to_hex(n), 32, '0'), 'review', 'tfidf-lr-bench'"
                " FROM generate_series(1, :count) AS n"
            ),
            {"count": count},
        )
        conn.execute(
            text(
                """
                INSERT INTO review_item (document_id, status, reason, priority, due_at,
                    predicted_label, confidence, probabilities, model_version, model_role,
                    extraction_status, source_kind, source_name, filename, media_type,
                    blob_sha256, received_at, trace_id, classified_event_id, search_text)
                SELECT 'doc_' || lpad(to_hex(n), 32, '0'), 'pending',
                    (ARRAY['low_confidence', 'extraction_failed', 'encrypted',
                           'model_unavailable'])[1 + n % 4],
                    1 + n % 3, :now + (n % 5000) * interval '1 minute',
                    (ARRAY['billing','technical','legal','other'])[1 + n % 4], 0.5,
                    '{"billing": 0.5, "other": 0.5}'::jsonb, 'tfidf-lr-bench', 'champion', 'ok',
                    (ARRAY['upload','imap','smtp','folder'])[1 + n % 4], 'bench',
                    'doc-' || n || '.txt',
                    'text/plain', lpad(to_hex(n), 64, '0'), :now - (n % 48) * interval '1 hour',
                    lpad(to_hex(n), 32, '0'), gen_random_uuid(),
                    (SELECT string_agg(
                        (CAST(:words AS text[]))[1 + (n * 7919 + k * 104729) % :vocab], ' ')
                     FROM generate_series(1, 40) AS k)
                FROM generate_series(1, :count) AS n
                """
            ),
            {"count": count, "now": datetime.now(UTC), "words": WORDS, "vocab": len(WORDS)},
        )
        conn.execute(text("ANALYZE review_item"))
    engine.dispose()
    return time.perf_counter() - started


def timed(client: TestClient, path: str, repeat: int) -> tuple[float, float, float]:
    """Median, 95th percentile and worst wall time (ms) of GET ``path``."""
    client.get(path).raise_for_status()  # warm up
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(path).raise_for_status()
        samples.append((time.perf_counter() - started) * 1000)
    p95 = statistics.quantiles(samples, n=20, method="inclusive")[-1]
    return statistics.median(samples), p95, max(samples)


def main() -> None:
    """Fill, sign in, time the pages, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    stack = stack_env()
    with scratch_database(stack["TRIAGE_DATABASE_URL"]) as database_url:
        upgrade(database_url)
        fill_seconds = fill(database_url, args.items)

        async def add_user() -> None:
            engine = make_async_engine(database_url)
            await AuthStore(engine).create_user("bench", PASSWORD, "reviewer")
            await engine.dispose()

        asyncio.run(add_user())
        settings = Settings(
            database_url=database_url,
            kafka_bootstrap=stack["TRIAGE_KAFKA_BOOTSTRAP"],
            topic_prefix=f"bench-{secrets.token_hex(3)}.",
        )
        with TestClient(create_app(settings)) as client:
            review_sign_in(client, "bench", PASSWORD)
            rows = [
                ("queue page (50 rows, soonest due)", "/"),
                ("queue page, filtered by reason", "/?reason=encrypted"),
                ("queue page, filtered by label+source", "/?label=legal&source=imap"),
                ("queue page, filtered: reason, age > 24 h", "/?reason=encrypted&age=24"),
                ("queue page 100 (offset 4,950)", "/?offset=4950"),
                ("queue page, sorted by name", "/?sort=name"),
                ("text search, one word", "/?q=billing"),
                ("text search, two words", "/?q=billing+consent"),
                ("text search, no match", "/?q=zeppelin"),
                ("text search + reason filter", "/?q=firmware&reason=low_confidence"),
                ("JSON API, search, 50 rows", "/api/v1/review-items?q=billing"),
                ("JSON API, 50 rows", "/api/v1/review-items"),
                ("dashboard", "/dashboard"),
            ]
            results = [(name, *timed(client, path, args.repeat)) for name, path in rows]
            found = {
                words: client.get("/api/v1/review-items", params={"q": words}).json()["matching"]
                for words in ("billing", "billing consent", "firmware")
            }
    print(
        f"{args.items:,} pending review items (inserted in {fill_seconds:.1f} s), "
        f"{args.repeat} requests each, signed in, through the FastAPI app"
    )
    print("items a search matches: " + ", ".join(f"{w!r} {n:,}" for w, n in found.items()))
    print(f"{'page':<42} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    print("-" * 71)
    for name, median, p95, worst in results:
        print(f"{name:<42} {median:>10.1f} {p95:>8.1f} {worst:>8.1f}")


if __name__ == "__main__":
    main()
