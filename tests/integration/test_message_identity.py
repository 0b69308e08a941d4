"""Issue 20, defect 8: an email is its Message-ID and parts as well as its bytes, across
connectors; the status API answers for every connector's documents and by Message-ID."""

from __future__ import annotations

import asyncio
import os
import smtplib
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from scripts.pdfgen import make_pdf
from tests.faults.harness import read_topics
from tests.helpers import email_bytes, free_port, isolated_ingest_settings, new_api_key, sql_rows
from tests.integration.test_imap import Harness, _message
from tests.kafkatools import collect
from tests.stack import Stack
from triage_contracts import Source, SourceKind, topics
from triage_ingest.app import create_app

SMTP = Source(kind=SourceKind.SMTP, name="smtp")
IMAP = Source(kind=SourceKind.IMAP, name="support")


@pytest.fixture
async def harnesses(isolated: Stack, clean_db: str, tmp_path: Path) -> AsyncIterator[list[Harness]]:
    """Two intakes on the same database and topics, as two ingest processes would be."""
    both = [Harness(isolated, clean_db, tmp_path / "blobs") for _ in range(2)]
    for h in both:
        await h.broker.start()
    yield both
    for h in both:
        await h.broker.stop()
        await h.engine.dispose()


async def test_copies_arriving_at_once_by_smtp_and_imap_are_one_set_of_documents(
    isolated: Stack, clean_db: str, harnesses: list[Harness]
) -> None:
    smtp, imap = harnesses
    rounds = 8
    for n in range(rounds):
        raw = _message(n, pdf=True)
        # The mailbox's copy went through one more relay, which added its Received header.
        copy = b"Received: from mx.example.org by imap.example.org; 6 Dec 2026\r\n" + raw
        by_smtp, by_imap = await asyncio.gather(
            smtp.intake.accept_email(raw, source=SMTP),
            imap.intake.accept_email(copy, source=IMAP, mailbox="INBOX"),
        )
        assert by_smtp.raw_sha256 != by_imap.raw_sha256
        ids = [d.document_id for d in by_smtp.documents]
        assert len(ids) == 2 and [d.document_id for d in by_imap.documents] == ids

    rows = sql_rows(clean_db, "SELECT message_id, count(*) FROM document GROUP BY message_id")
    assert len(rows) == rounds and {count for _, count in rows} == {2}
    published = await read_topics(isolated.kafka_bootstrap, [isolated.topic(topics.DOCUMENTS)])
    per_document = Counter(str(record["key"]) for record in published)
    assert len(per_document) == 2 * rounds and set(per_document.values()) == {1}


async def test_a_different_mail_reusing_a_message_id_is_new_documents(
    clean_db: str, harnesses: list[Harness]
) -> None:
    smtp, imap = harnesses
    raw = _message(1, pdf=True)
    other = raw.replace(b"about my invoice", b"about a different invoice")
    first, second = await asyncio.gather(
        smtp.intake.accept_email(raw, source=SMTP),
        imap.intake.accept_email(other, source=IMAP, mailbox="INBOX"),
    )
    assert not {d.document_id for d in first.documents} & {d.document_id for d in second.documents}
    # Their attachment is the same bytes but, like the body, a document of each mail.
    [(count,)] = sql_rows(clean_db, "SELECT count(*) FROM document")
    assert count == 4


def test_the_status_api_answers_for_every_connector_and_by_message_id(
    isolated: Stack, clean_db: str, tmp_path: Path
) -> None:
    port, drop = free_port(), tmp_path / "drop"
    (drop / "inbox").mkdir(parents=True)
    settings = isolated_ingest_settings(
        isolated,
        clean_db,
        tmp_path,
        smtp_enabled=True,
        smtp_port=port,
        smtp_allowed_recipients=["triage@example.org"],
        drop_dir=drop,
        drop_poll_seconds=0.2,
    )
    key = new_api_key(clean_db, "portal")
    # CRLF line ends, as a mail client sends them (bare LF is defect 4, not this one).
    mail = email_bytes("Invoice 88", "See attached.", attachment=make_pdf("Invoice 88"))
    mail = mail.replace(b"\n", b"\r\n")
    with TestClient(create_app(settings)) as client:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.sendmail("dana@example.com", ["triage@example.org"], mail)
        asyncio.run(
            collect(
                isolated.kafka_bootstrap,
                [isolated.topic(topics.DOCUMENTS)],
                until=lambda ms: len(ms) >= 2,
            )
        )
        # The same mail saved from a mail client, and another one, dropped in the folder.
        saved = b"X-Saved-By: Outlook\r\n" + mail
        (drop / "inbox" / "saved.eml").write_bytes(saved)
        (drop / "inbox" / "other.eml").write_bytes(email_bytes("Order 5", "Five boxes."))
        old = time.time() - 5  # written before: the folder takes them at once
        for path in (drop / "inbox").iterdir():
            os.utime(path, (old, old))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list((drop / "done").glob("*"))) < 2:
            time.sleep(0.2)
        assert len(list((drop / "done").glob("*"))) == 2

        headers = {"X-API-Key": key}
        # Angle brackets, @ and / travel URL-encoded in the query; both spellings are found.
        invoice = client.get(
            "/v1/documents", params={"message_id": "<Invoice-88@example.com>"}, headers=headers
        )
        assert invoice.status_code == 200, invoice.text
        documents = invoice.json()["documents"]
        assert {d["filename"] for d in documents} == {None, "invoice.pdf"}
        assert {d["source"]["kind"] for d in documents} == {"smtp"}, "the copy made none"
        assert {d["message_id"] for d in documents} == {"Invoice-88@example.com"}
        bare = client.get(
            "/v1/documents", params={"message_id": "Invoice-88@example.com"}, headers=headers
        )
        assert bare.json() == invoice.json()

        [order] = client.get(
            "/v1/documents?message_id=%3COrder-5%40example.com%3E", headers=headers
        ).json()["documents"]
        assert order["source"]["kind"] == "folder"
        for document in [*documents, order]:
            one = client.get(f"/v1/documents/{document['document_id']}", headers=headers)
            assert one.status_code == 200, "a connector's document is every key's to follow"
            assert one.json()["document_id"] == document["document_id"]

        nothing = client.get("/v1/documents", params={"message_id": "<no/such@x>"}, headers=headers)
        assert nothing.status_code == 200 and nothing.json() == {"documents": []}
        assert client.get("/v1/documents", params={"message_id": "x"}).status_code == 401
