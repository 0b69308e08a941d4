"""An email's parts in the review UI against real PostgreSQL: an attachment's item finds its
mail (its body's item, or how the body was routed) and its sibling parts; the queue shows
subject and sender, escaped, long subjects cut with the whole in a title."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from scripts.pdfgen import make_pdf
from tests.helpers import (
    RECEIVED_AT,
    classified,
    email_bytes,
    isolated_ingest_settings,
    new_api_key,
    review_login,
    routed_item,
    sql_rows,
)
from tests.kafkatools import collect
from tests.review_items import Seed, open_items, record_document, route_seeded, seeded_event
from tests.stack import Stack
from triage_contracts import (
    DecidedBy,
    DocumentClassifiedV1,
    DocumentReceivedV1,
    SourceKind,
    topics,
)
from triage_ingest.app import create_app as create_ingest_app
from triage_review_ui import queries as review_queries
from triage_review_ui.app import create_app
from triage_review_ui.domain import part_state
from triage_review_ui.queries import Mail, ReviewQueries
from triage_review_ui.settings import Settings
from triage_runtime.accounts.store import AuthStore
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason, RouteTo, SendToReview

PASSWORD = "correct horse battery"
SUBJECT = "Invoice 4471 <script>alert(1)</script> & terms"
SENDER = "Dana <dana@example.com>"
LONG_SUBJECT = "Quarterly statement " + "with many words " * 10 + "END"


def _part(n: int, name: str | None, doc: str, parent: str | None, **kw: object) -> Seed:
    return Seed(
        f"Part {n} of the mail: {name}.",
        filename=name,
        subject=SUBJECT,
        sender=SENDER,
        source=SourceKind.IMAP,
        received_at=RECEIVED_AT + timedelta(seconds=n),
        document_id=doc,
        parent=parent,
        **kw,  # type: ignore[arg-type]
    )


BODY = "doc_00000000000000000000000000000001"
INVOICE = "doc_00000000000000000000000000000002"
CONTRACT = "doc_00000000000000000000000000000003"
PHOTO = "doc_00000000000000000000000000000004"
SAMPLED = "doc_00000000000000000000000000000005"
# A second mail whose body is in review, and a document on its own.
BODY2 = "doc_0000000000000000000000000000000b"
SHEET = "doc_0000000000000000000000000000000c"
ALONE = "doc_00000000000000000000000000000015"


def _seed(database_url: str, blob_dir: Path) -> None:
    async def run() -> None:
        engine = make_async_engine(database_url)
        await AuthStore(engine).create_user("alice", PASSWORD, "reviewer")
        store, blobs = OutcomeStore(engine), LocalBlobStore(blob_dir)
        # The body was routed by the model: no review item.
        await route_seeded(store, blobs, engine, _part(0, None, BODY, None), "billing")
        await open_items(
            store,
            blobs,
            [
                _part(1, "invoice.txt", INVOICE, BODY, part="2"),
                _part(2, "contract.txt", CONTRACT, BODY, part="3"),
                Seed(
                    "Statement.",
                    filename=None,
                    subject=LONG_SUBJECT,
                    sender="bank@example.com",
                    source=SourceKind.IMAP,
                    document_id=BODY2,
                ),
                Seed(
                    "Sheet.",
                    filename="sheet.csv",
                    subject=LONG_SUBJECT,
                    sender="bank@example.com",
                    source=SourceKind.IMAP,
                    document_id=SHEET,
                    parent=BODY2,
                    part="2",
                ),
                Seed("On its own.", filename="alone.txt", document_id=ALONE),
                Seed("Never recorded as a document.", filename="legacy.txt"),
            ],
            engine,
        )
        # Received but not scored yet: a document, no outcome.
        await record_document(engine, seeded_event(blobs, _part(3, "photo.txt", PHOTO, BODY)))
        # Routed, and in the policy's blind quality sample: it must read "in review".
        sample = seeded_event(blobs, _part(4, "sampled.txt", SAMPLED, BODY, part="5"))
        await record_document(engine, sample)
        sampled = RouteTo(
            "billing",
            DecidedBy.MODEL,
            0.99,
            quality_sample=SendToReview(ReviewReason.QUALITY_SAMPLE, 3, RECEIVED_AT),
        )
        await store.record_route(sample, sampled, routed=routed_item(sample, sampled))
        await engine.dispose()

    asyncio.run(run())


@pytest.fixture
def seeded(clean_db: str, tmp_path: Path) -> dict[str, int]:
    """The seeds above in the clean database; review item ids by document id."""
    _seed(clean_db, tmp_path / "blobs")
    return {
        str(d): int(i) for d, i in sql_rows(clean_db, "SELECT document_id, id FROM review_item")
    }


def _mail(database_url: str, item_id: int) -> Mail | None:
    async def run() -> Mail | None:
        engine = make_async_engine(database_url)
        try:
            queries = ReviewQueries(engine)
            item = await queries.item(item_id)
            assert item is not None
            return await queries.mail(item)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_an_attachment_finds_its_routed_body_and_every_sibling_with_its_fate(
    clean_db: str, seeded: dict[str, int]
) -> None:
    mail = _mail(clean_db, seeded[INVOICE])
    assert mail is not None and not mail.item_is_body and mail.more == 0
    assert mail.body is not None and mail.body.document_id == BODY
    assert mail.body.item_id is None, "the body was routed, it has no review item"
    assert part_state(mail.body) == "routed to billing"
    listed = [(p.document_id, p.filename, p.part, p.item_id, part_state(p)) for p in mail.parts]
    assert listed == [
        (CONTRACT, "contract.txt", "3", seeded[CONTRACT], "in review"),
        (PHOTO, "photo.txt", None, None, "not scored yet"),
        (SAMPLED, "sampled.txt", "5", seeded[SAMPLED], "in review"),  # blind: not "routed"
    ]


def test_a_body_in_review_lists_its_parts_and_its_parts_link_back(
    clean_db: str, seeded: dict[str, int]
) -> None:
    body = _mail(clean_db, seeded[BODY2])
    assert body is not None and body.item_is_body and body.body is None
    assert [(p.document_id, p.item_id) for p in body.parts] == [(SHEET, seeded[SHEET])]
    sheet = _mail(clean_db, seeded[SHEET])
    assert sheet is not None and sheet.body is not None and sheet.parts == []
    assert (sheet.body.document_id, sheet.body.item_id) == (BODY2, seeded[BODY2])


def test_a_document_of_no_mail_has_none(clean_db: str, seeded: dict[str, int]) -> None:
    assert _mail(clean_db, seeded[ALONE]) is None, "no parent, no parts"
    legacy = sql_rows(clean_db, "SELECT id FROM review_item WHERE filename = 'legacy.txt'")
    assert _mail(clean_db, int(legacy[0][0])) is None, "never recorded as a document"


def test_a_mail_with_more_parts_than_a_page_lists_says_how_many_more(
    clean_db: str, seeded: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(review_queries, "MAX_MAIL_PARTS", 2)
    mail = _mail(clean_db, seeded[INVOICE])
    assert mail is not None and mail.body is not None
    assert [p.document_id for p in mail.parts] == [CONTRACT, PHOTO]
    assert mail.more == 1


@pytest.fixture
def client(
    isolated: Stack, clean_db: str, tmp_path: Path, seeded: dict[str, int]
) -> Iterator[TestClient]:
    settings = Settings(
        database_url=clean_db,
        kafka_bootstrap=isolated.kafka_bootstrap,
        topic_prefix=isolated.topic_prefix,
        blob_dir=tmp_path / "blobs",
    )
    with TestClient(create_app(settings)) as test_client:
        review_login(test_client, "alice", PASSWORD)
        yield test_client


def test_the_item_page_shows_the_part_links_the_mail_and_escapes_the_subject(
    client: TestClient, seeded: dict[str, int]
) -> None:
    page = client.get(f"/items/{seeded[INVOICE]}").text
    assert "<script>alert(1)</script>" not in page
    assert html.escape(SUBJECT, quote=False) in page
    assert "· part 2" in page
    section = re.search(r'<section class="mail".*?</section>', page, re.S)
    assert section, page
    mail = section.group(0)
    assert "routed to billing" in mail and f'<code class="docid">{BODY}</code>' in mail
    links = re.findall(r'<a class="part-link" href="/items/(\d+)">([^<]*)</a>', mail)
    assert links == [(str(seeded[CONTRACT]), "contract.txt"), (str(seeded[SAMPLED]), "sampled.txt")]
    assert "photo.txt" in mail and f'/items/{seeded[INVOICE]}"' not in mail, "never itself"


def test_the_queue_shows_subject_and_sender_escaped_and_cuts_long_subjects(
    client: TestClient, seeded: dict[str, int]
) -> None:
    page = client.get("/", params={"sort": "name"}).text
    assert "<script>alert(1)</script>" not in page
    invoice = re.search(
        r'>invoice\.txt</a>\s*<span class="mail-line">(.*?)</span>\s*<code', page, re.S
    )
    assert invoice, page
    assert html.escape(SUBJECT, quote=False) in invoice.group(1)
    assert "from " + html.escape(SENDER, quote=False) in invoice.group(1)
    whole = html.escape(LONG_SUBJECT)
    assert f'title="{whole}"' in page, "a long subject is whole in a title"
    cut = re.findall(r'<span class="subject" title="[^"]*">“([^”]*)”</span>', page)
    assert cut and all(len(c) == 80 and c.endswith("…") for c in cut)
    name = re.search(rf'title="{re.escape(whole)}">([^<]*)</a>', page)
    assert name and len(name.group(1)) == 80, "the body's name (its subject) is cut too"


def test_a_mail_as_ingest_records_it_links_its_attachment_to_its_routed_body(
    isolated: Stack, clean_db: str, tmp_path: Path
) -> None:
    """The real ingest stores a mail's body and attachment; the router routes the body and
    sends the attachment to review: the attachment's item finds the body and its route."""
    settings = isolated_ingest_settings(isolated, clean_db, tmp_path)
    key = new_api_key(clean_db, "portal")
    raw = email_bytes("Invoice 5 overdue", "See attached.", attachment=make_pdf("Invoice 5"))
    with TestClient(create_ingest_app(settings)) as ingest:
        sent = ingest.post(
            "/v1/documents",
            headers={"X-API-Key": key},
            files={"files": ("forwarded.eml", raw, "message/rfc822")},
        )
        assert sent.status_code == 202, sent.text
    published = asyncio.run(
        collect(
            isolated.kafka_bootstrap,
            [isolated.topic(topics.DOCUMENTS)],
            until=lambda records: len(records) >= 2,
        )
    )
    received = [DocumentReceivedV1.model_validate(r["value"]) for r in published]
    [body] = [e for e in received if e.document.parent_document_id is None]
    [attachment] = [e for e in received if e.document.parent_document_id == body.document_id]

    def scored(event: DocumentReceivedV1) -> DocumentClassifiedV1:
        return classified().model_copy(
            update={"document_id": event.document_id, "document": event.document}
        )

    async def run() -> Mail | None:
        engine = make_async_engine(clean_db)
        try:
            store = OutcomeStore(engine)
            route = RouteTo("billing", DecidedBy.MODEL, 0.97)
            await store.record_route(scored(body), route, routed=routed_item(scored(body), route))
            review = SendToReview(ReviewReason.LOW_CONFIDENCE, 2, RECEIVED_AT)
            assert await store.open_review(scored(attachment), review)
            queries = ReviewQueries(engine)
            [row] = (await queries.open_queue(limit=5)).rows
            item = await queries.item(row.id)
            assert item is not None and attachment.document.email is not None
            assert item.email_part == attachment.document.email.part
            assert item.email_subject == "Invoice 5 overdue"
            assert "dana@example.com" in (item.email_sender or "")
            return await queries.mail(item)
        finally:
            await engine.dispose()

    mail = asyncio.run(run())
    assert mail is not None and mail.body is not None and mail.parts == []
    assert mail.body.document_id == body.document_id and mail.body.item_id is None
    assert part_state(mail.body) == "routed to billing"
