"""Mail rules and part kinds through the IMAP connector against a real Dovecot, Kafka and
PostgreSQL: what becomes a document, with what metadata, and what is done to each mail."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from tests import mail_samples
from tests.faults.harness import read_topics
from tests.helpers import sql_rows
from tests.integration import test_imap
from tests.integration.test_imap import Harness, _account, _append, _client, _imap
from tests.stack import Stack
from triage_contracts import topics
from triage_ingest.imap import TRIAGED_FLAG

# The IMAP tests' fixtures: a fresh mailbox, and an intake on real Kafka and PostgreSQL.
mailbox = test_imap.mailbox
harness = test_imap.harness


async def _documents_by_subject(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """Each published document, by its mail's subject, in MIME order (the topic's partitions
    do not keep one mail's parts in order)."""
    records = await read_topics(stack.kafka_bootstrap, [stack.topic(topics.DOCUMENTS)])
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        document = record["value"]["document"]
        found[document["email"]["subject"]].append(document)
    for documents in found.values():
        documents.sort(key=lambda d: _mime_order(d["email"]["part"]))
    return found


def _mime_order(part: str) -> list[int]:
    """``body`` first, then ``2`` < ``2.1`` < ``2/body`` < ``10``."""
    return [int(step) if step.isdigit() else -1 for step in re.split(r"[./]", part)]


def _parts(documents: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["email"]["part"], d["blob"]["media_type"]) for d in documents]


async def test_inline_images_signatures_and_reports_become_no_documents_by_default(
    isolated: Stack, clean_db: str, mailbox: str, harness: Harness
) -> None:
    imap = _imap(isolated)
    _append(
        imap,
        mailbox,
        [
            mail_samples.outlook_inline_image("d"),
            mail_samples.smime_signed("d"),
            mail_samples.pgp_signed("d"),
            mail_samples.delivery_report("d"),
            mail_samples.read_receipt("d"),
        ],
    )

    assert await harness.poll(_account(imap, mailbox), mailbox) == 5

    documents = await _documents_by_subject(isolated)
    assert {subject: _parts(docs) for subject, docs in documents.items()} == {
        "Invoice d from Supplier": [("body", "text/plain"), ("2", "application/pdf")],
        "Contract question d": [("body", "text/plain")],
        "Signed note d": [("body", "text/plain")],
        "Undelivered Mail Returned to Sender": [("body", "text/plain")],
        "Read: Reminder d": [("body", "text/plain")],
    }
    [(count,)] = sql_rows(clean_db, "SELECT count(*) FROM document WHERE source_kind = 'imap'")
    assert count == 6
    assert all(d["metadata"] == {} for docs in documents.values() for d in docs)


async def test_rules_choose_parts_set_metadata_and_post_process_each_mail(
    isolated: Stack, clean_db: str, mailbox: str, harness: Harness
) -> None:
    imap = _imap(isolated)
    invoices = f"{mailbox}-invoices"
    with _client(imap) as client:
        client.create_folder(invoices)
    try:
        _append(
            imap,
            mailbox,
            [
                mail_samples.outlook_inline_image("r"),
                mail_samples.delivery_report("r"),
                mail_samples.pgp_signed("r"),
            ],
        )
        with _client(imap) as client:
            # Arrived years ago (INTERNALDATE), whatever its Date header says.
            client.append(
                mailbox, mail_samples.smime_signed("old"), msg_time=datetime(2020, 1, 2, tzinfo=UTC)
            )
        rules = [
            {
                "name": "invoices",
                "from": "*@SUPPLIER.example.com",
                "attachment_name": "invoice-*.pdf",
                "parts": "attachments",
                "queue_hint": "accounts-payable",
                "metadata": {"team": "ap"},
                "post_process": "move",
                "move_to": invoices,
            },
            {
                "name": "bounces",
                "subject": "undelivered mail*",
                "include_delivery_status": True,
                "post_process": "delete",
            },
            {"name": "old", "min_age_days": 365, "skip": True, "post_process": "leave"},
        ]
        account = _account(imap, mailbox, rules=rules)  # post_process: flag by default

        assert await harness.poll(account, mailbox) == 4

        documents = await _documents_by_subject(isolated)
        [invoice] = documents["Invoice r from Supplier"]
        assert (invoice["email"]["part"], invoice["filename"]) == ("2", "invoice-r.pdf")
        assert invoice["parent_document_id"] is None, "its body was not taken"
        assert invoice["metadata"] == {
            "team": "ap",
            "mail_rule": "invoices",
            "queue_hint": "accounts-payable",
        }
        bounce = documents["Undelivered Mail Returned to Sender"]
        assert _parts(bounce) == [
            ("body", "text/plain"),
            ("2", "message/delivery-status"),
            ("3", "text/rfc822-headers"),
        ]
        assert all(d["metadata"] == {"mail_rule": "bounces"} for d in bounce)
        assert _parts(documents["Signed note r"]) == [("body", "text/plain")]
        assert documents["Signed note r"][0]["metadata"] == {}
        assert "Contract question old" not in documents, "skipped: no documents"

        with _client(imap) as client:
            client.select_folder(invoices, readonly=True)
            moved = client.fetch(client.search(["ALL"]), ["ENVELOPE"])
            assert [m[b"ENVELOPE"].subject for m in moved.values()] == [b"Invoice r from Supplier"]
            client.select_folder(mailbox, readonly=True)
            left = client.fetch(client.search(["ALL"]), ["ENVELOPE", "FLAGS"])
            assert sorted(
                (m[b"ENVELOPE"].subject, TRIAGED_FLAG in m[b"FLAGS"]) for m in left.values()
            ) == [(b"Contract question old", False), (b"Signed note r", True)], (
                "the bounce is deleted, the old mail left as it was, the rest flagged"
            )

        assert await harness.poll(account, mailbox) == 0, "a skipped mail is not read again"
    finally:
        with _client(imap) as client:
            client.delete_folder(invoices)
