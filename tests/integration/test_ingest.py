"""Ingest against real Kafka and PostgreSQL: the upload API, the drop folder and SMTP."""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import json
import os
import re
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from scripts.pdfgen import make_pdf
from tests.faults.harness import read_topics
from tests.helpers import (
    email_bytes,
    free_port,
    isolated_ingest_settings,
    new_api_key,
    sql_rows,
    table_rows,
    unquoted_parameters_mail,
)
from tests.kafkatools import collect, produce
from tests.stack import Stack
from triage_cli.main import app as cli_app
from triage_contracts import ExtractionStatus, topics
from triage_ingest import intake as intake_module
from triage_ingest.app import create_app
from triage_ingest.settings import Settings
from triage_ingest.store import IngestStore
from triage_runtime.apikeys import ApiKeys
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_text.email.result import ParsedMessage
from triage_text.extract import extract_text, normalise


def _published(stack: Stack, topic: str, count: int) -> list[dict[str, object]]:
    return asyncio.run(
        collect(stack.kafka_bootstrap, [stack.topic(topic)], until=lambda ms: len(ms) >= count)
    )


def _to_end(stack: Stack, topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` up to its end: a late duplicate is not missed."""
    return asyncio.run(read_topics(stack.kafka_bootstrap, [stack.topic(topic)]))


@pytest.fixture
def settings(isolated: Stack, clean_db: str, tmp_path: Path) -> Settings:
    return isolated_ingest_settings(
        isolated,
        clean_db,
        tmp_path,
        max_files_per_request=3,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_uploads_need_a_live_api_key(client: TestClient, settings: Settings) -> None:
    files = {"files": ("a.txt", b"hello", "text/plain")}
    assert client.post("/v1/documents", files=files).status_code == 401
    assert (
        client.post("/v1/documents", files=files, headers={"X-API-Key": "tri_nope"}).status_code
        == 401
    )
    key = new_api_key(settings.database_url, "portal")
    assert client.post("/v1/documents", files=files, headers={"X-API-Key": key}).status_code == 202

    async def revoke() -> None:
        engine = make_async_engine(settings.database_url)
        assert await ApiKeys(engine).revoke("portal")
        await engine.dispose()

    asyncio.run(revoke())
    assert client.post("/v1/documents", files=files, headers={"X-API-Key": key}).status_code == 401
    stored = sql_rows(settings.database_url, "SELECT key_sha256 FROM api_key")
    assert key not in json.dumps([str(r) for r in stored]), "the key itself must not be stored"


def test_upload_is_accepted_published_and_trackable(
    client: TestClient, settings: Settings, isolated: Stack
) -> None:
    key = new_api_key(settings.database_url, "portal")
    pdf = make_pdf("Payment reminder for invoice 99.")
    response = client.post(
        "/v1/documents",
        headers={"X-API-Key": key},
        files=[
            ("files", ("../../reminder.pdf", pdf, "application/pdf")),
            ("files", ("note.txt", b"please pay", "text/plain")),
        ],
        data={"metadata": json.dumps({"customer": "acme"})},
    )
    assert response.status_code == 202, response.text
    first, second = response.json()["documents"]
    assert first["filename"] == "reminder.pdf"
    assert LocalBlobStore(settings.blob_dir).get(first["sha256"]) == pdf

    status = client.get(first["status_url"], headers={"X-API-Key": key})
    assert status.status_code == 200
    assert status.json()["status"] == "received"
    assert status.json()["source"] == {"kind": "upload", "name": "portal"}
    other_key = new_api_key(settings.database_url, "someone-else")
    assert client.get(first["status_url"], headers={"X-API-Key": other_key}).status_code == 404

    messages = _published(isolated, topics.DOCUMENTS, 2)
    by_id = {m["key"]: m for m in messages}
    event = by_id[first["document_id"]]
    assert event["value"]["document"]["metadata"] == {"customer": "acme"}  # type: ignore[index]
    assert event["headers"]["triage-schema"] == "DocumentReceived.v1"  # type: ignore[index]
    assert second["document_id"] in by_id


def test_retries_never_make_a_second_document(
    client: TestClient, settings: Settings, isolated: Stack
) -> None:
    key = new_api_key(settings.database_url, "portal")
    files = {"files": ("a.txt", b"the same bytes", "text/plain")}
    headers = {"X-API-Key": key, "Idempotency-Key": "req-1"}
    first = client.post("/v1/documents", files=files, headers=headers)
    again = client.post("/v1/documents", files=files, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    # Without the header, the content hash per source still recognises the document.
    plain = client.post("/v1/documents", files=files, headers={"X-API-Key": key})
    assert (
        plain.json()["documents"][0]["document_id"] == first.json()["documents"][0]["document_id"]
    )
    changed = client.post(
        "/v1/documents", files={"files": ("a.txt", b"other bytes", "text/plain")}, headers=headers
    )
    assert changed.status_code == 422
    assert "Idempotency-Key" in changed.json()["detail"]
    assert sql_rows(settings.database_url, "SELECT count(*) FROM document") == [(1,)]
    messages = _to_end(isolated, topics.DOCUMENTS)
    assert [m["key"] for m in messages] == [first.json()["documents"][0]["document_id"]], (
        "one document, one DocumentReceived event"
    )


def test_files_of_one_request_are_accepted_together_each_published_once(
    client: TestClient, settings: Settings, isolated: Stack
) -> None:
    key = new_api_key(settings.database_url, "portal")
    # A document recorded before a crash stopped its publication: still unpublished.
    crashed = b"recorded, never published"
    sha = LocalBlobStore(settings.blob_dir).put(crashed)

    async def record_without_publishing() -> str:
        from triage_contracts import Producer, Source, SourceKind, utcnow
        from triage_ingest import domain

        event = domain.document_received(
            source=Source(kind=SourceKind.UPLOAD, name="portal"),
            sha256=sha,
            size_bytes=len(crashed),
            media_type="text/plain",
            filename="crashed.txt",
            received_at=utcnow(),
            producer=Producer(service="ingest", version="test"),
        )
        engine = make_async_engine(settings.database_url)
        try:
            [stored] = await IngestStore(engine).record_documents(
                [event], topic=settings.topic(topics.DOCUMENTS)
            )
        finally:
            await engine.dispose()
        assert stored.created
        return str(stored.event_id)

    crashed_event_id = asyncio.run(record_without_publishing())
    response = client.post(
        "/v1/documents",
        headers={"X-API-Key": key},
        files=[
            ("files", ("a.txt", b"same bytes twice", "text/plain")),
            ("files", ("again.txt", b"same bytes twice", "text/plain")),
            ("files", ("crashed.txt", crashed, "text/plain")),
        ],
    )
    assert response.status_code == 202, response.text
    first, second, third = response.json()["documents"]
    assert first["document_id"] == second["document_id"]
    # The same bytes twice are one document, answered as it was stored (docs/ingest.md).
    assert [first["filename"], second["filename"]] == ["a.txt", "a.txt"]
    rows = sql_rows(
        settings.database_url,
        "SELECT d.document_id, o.published_at IS NOT NULL FROM document d"
        " JOIN outbox o USING (event_id) ORDER BY d.document_id",
    )
    assert sorted(str(r[0]) for r in rows) == sorted([first["document_id"], third["document_id"]])
    assert all(r[1] for r in rows), "every recorded document's one event is published"
    messages = _to_end(isolated, topics.DOCUMENTS)
    assert sorted(str(m["key"]) for m in messages) == sorted(str(r[0]) for r in rows)
    by_id = {m["key"]: m["value"] for m in messages}
    # The crashed document goes out with the event id it was recorded with.
    assert by_id[third["document_id"]]["event_id"] == crashed_event_id


def test_the_same_bytes_again_are_answered_as_the_document_stored(
    client: TestClient, settings: Settings
) -> None:
    key = new_api_key(settings.database_url, "portal")
    headers = {"X-API-Key": key}
    sent = b"# Invoice 7\n\nplease pay"
    first = client.post(
        "/v1/documents", headers=headers, files={"files": ("invoice.txt", sent, "text/plain")}
    )
    again = client.post(
        "/v1/documents",
        headers=headers,
        files={"files": ("renamed-copy.md", sent, "text/markdown")},
    )
    assert first.status_code == again.status_code == 202, again.text
    [stored], [answered] = first.json()["documents"], again.json()["documents"]
    assert answered == stored
    assert (answered["filename"], answered["media_type"]) == ("invoice.txt", "text/plain")
    status = client.get(answered["status_url"], headers=headers).json()
    assert (status["filename"], status["media_type"]) == ("invoice.txt", "text/plain")
    assert sql_rows(settings.database_url, "SELECT filename FROM document") == [("invoice.txt",)]


def test_a_file_name_over_255_bytes_keeps_its_extension(
    client: TestClient, settings: Settings
) -> None:
    headers = {"X-API-Key": new_api_key(settings.database_url, "portal")}
    long_name = "quarterly-report-" + "x" * 300 + ".txt"
    # Declared as bytes of no particular type: the extension is what says it is text.
    response = client.post(
        "/v1/documents",
        headers=headers,
        files={"files": (long_name, b"quarterly numbers", "application/octet-stream")},
    )
    assert response.status_code == 202, response.text
    [document] = response.json()["documents"]
    assert document["media_type"] == "text/plain"
    assert document["filename"].endswith("xxx.txt")
    assert len(document["filename"].encode()) <= 255
    status = client.get(document["status_url"], headers=headers).json()
    assert status["filename"] == document["filename"]


def test_limits_and_refusals(client: TestClient, settings: Settings) -> None:
    key = new_api_key(settings.database_url, "portal")
    headers = {"X-API-Key": key}
    big = client.post(
        "/v1/documents",
        headers=headers,
        files={"files": ("big.txt", b"x" * (64 * 1024 + 1), "text/plain")},
    )
    assert big.status_code == 413
    assert "limit" in big.json()["detail"]
    huge = client.post(
        "/v1/documents",
        headers=headers,
        content=b"x" * (settings.max_request_bytes + 1),
        # A declared body over the request limit is refused before it is read.
    )
    assert huge.status_code == 413
    too_many = client.post(
        "/v1/documents",
        headers=headers,
        files=[("files", (f"{i}.txt", b"x", "text/plain")) for i in range(4)],
    )
    assert too_many.status_code == 413
    wrong = client.post(
        "/v1/documents",
        headers=headers,
        files={"files": ("a.exe", b"MZ", "application/x-msdownload")},
    )
    assert wrong.status_code == 415
    bad_meta = client.post(
        "/v1/documents",
        headers=headers,
        files={"files": ("a.txt", b"x", "text/plain")},
        data={"metadata": "[1]"},
    )
    assert bad_meta.status_code == 422
    assert sql_rows(settings.database_url, "SELECT count(*) FROM document") == [(0,)]
    assert not list((settings.blob_dir / ".spool").glob(".upload-*"))


def test_drop_folder_ingests_moves_and_dead_letters(
    settings: Settings, isolated: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop = tmp_path / "drop"
    settings = settings.model_copy(update={"drop_dir": drop, "drop_poll_seconds": 0.2})
    (drop / "inbox").mkdir(parents=True)
    (drop / "inbox" / "letter.txt").write_text("Please cancel the contract.")
    (drop / "inbox" / "scan.pdf").write_bytes(make_pdf("Invoice 12"))
    (drop / "inbox" / "tool.exe").write_bytes(b"MZ\x90\x00")
    (drop / "inbox" / "mail.eml").write_bytes(
        email_bytes("Invoice", "See attached.", attachment=make_pdf("Invoice 77"))
    )
    (drop / "inbox" / ".half-written.pdf").write_bytes(b"%PDF-")
    old = time.time() - 5
    for path in (drop / "inbox").iterdir():
        os.utime(path, (old, old))
    with TestClient(create_app(settings)):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            len(list((drop / "done").iterdir())) < 3 or len(list((drop / "failed").iterdir())) < 2
        ):
            time.sleep(0.2)
    done = sorted(p.name.split("-", 1)[1] for p in (drop / "done").iterdir())
    assert done == ["letter.txt", "mail.eml", "scan.pdf"]
    failed = sorted(p.name.split("-", 1)[1] for p in (drop / "failed").iterdir())
    assert failed == ["tool.exe", "tool.exe.reason.txt"]
    assert [p.name for p in (drop / "inbox").iterdir()] == [".half-written.pdf"]

    documents = _published(isolated, topics.DOCUMENTS, 4)  # txt, pdf, mail body, attachment
    kinds = {m["value"]["document"]["source"]["kind"] for m in documents}  # type: ignore[index]
    assert kinds == {"folder"}
    attachment = next(m for m in documents if m["value"]["document"]["filename"] == "invoice.pdf")  # type: ignore[index]
    assert attachment["value"]["document"]["parent_document_id"] is not None  # type: ignore[index]
    [letter] = _published(isolated, topics.DEADLETTER, 1)
    value = letter["value"]
    assert value["error_class"] == "unsupported_media_type"  # type: ignore[index]
    raw = LocalBlobStore(settings.blob_dir).get(value["raw_blob"]["sha256"])  # type: ignore[index]
    assert raw == b"MZ\x90\x00", "the dead letter points at the kept raw input"
    # What owns each raw input: the mail's documents its raw message, the letter its input.
    mail = hashlib.sha256(next((drop / "done").glob("*-mail.eml")).read_bytes()).hexdigest()
    raws = sql_rows(settings.database_url, "SELECT raw_sha256 FROM document_raw")
    assert raws == [(mail,), (mail,)]
    kept = sql_rows(settings.database_url, "SELECT sha256 FROM dead_letter_blob")
    assert kept == [(value["raw_blob"]["sha256"],)]  # type: ignore[index]
    # The operator sees which file it was (issue 20, defect 7).
    assert value["raw_name"] == "tool.exe"  # type: ignore[index]
    monkeypatch.setenv("TRIAGE_KAFKA_BOOTSTRAP", isolated.kafka_bootstrap)
    monkeypatch.setenv("TRIAGE_TOPIC_PREFIX", isolated.topic_prefix)
    listed = CliRunner().invoke(cli_app, ["dlq", "list"])
    assert listed.exit_code == 0, listed.output
    [row] = table_rows(listed.output)
    assert row["error class"] == "unsupported_media_type"
    assert (row["from"], row["input"]) == ("folder:drop-folder", "tool.exe"), listed.output


def test_smtp_accepts_allowed_mail_and_refuses_the_rest(
    settings: Settings, isolated: Stack
) -> None:
    port = free_port()
    settings = settings.model_copy(
        update={
            "smtp_enabled": True,
            "smtp_port": port,
            "smtp_allowed_recipients": ["triage@example.org", "@queues.example.org"],
            "max_document_bytes": 100_000,
        }
    )
    with TestClient(create_app(settings)):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            refused = smtp.sendmail(
                "dana@example.com",
                ["triage@example.org", "billing@queues.example.org", "stranger@example.net"],
                email_bytes("Refund", "Please refund order 5."),
            )
            # Accepted for the allowed two; the stranger is refused with 550.
            assert refused == {"stranger@example.net": (550, b"5.1.1 Recipient not accepted here")}
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.sendmail("dana@example.com", ["stranger@example.net"], b"Subject: x\r\n\r\nx")
            # A client that declares the size (ESMTP SIZE) is refused up front ...
            with pytest.raises(smtplib.SMTPSenderRefused) as declared:
                smtp.sendmail("dana@example.com", ["triage@example.org"], b"x" * 200_000)
            assert declared.value.smtp_code == 552
            # ... and one that does not is refused when the data goes over the limit.
            smtp.rset()
            assert smtp.mail("dana@example.com")[0] == 250
            assert smtp.rcpt("triage@example.org")[0] == 250
            code, _ = smtp.data(b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 2000)
            assert code == 552
        [document] = _published(isolated, topics.DOCUMENTS, 1)
    value = document["value"]
    assert value["document"]["source"] == {"kind": "smtp", "name": "smtp"}  # type: ignore[index]
    assert value["document"]["email"]["message_id"] == "Refund@example.com"  # type: ignore[index]
    raw = LocalBlobStore(settings.blob_dir).get(value["document"]["blob"]["sha256"])  # type: ignore[index]
    assert b"Please refund order 5." in raw
    # The raw message is kept, owned by the document it became.
    [(document_id, raw_sha)] = sql_rows(
        settings.database_url, "SELECT document_id, raw_sha256 FROM document_raw"
    )
    assert document_id == document["key"]
    assert b"Please refund order 5." in LocalBlobStore(settings.blob_dir).get(raw_sha)


def test_smtp_mail_parts_are_typed_by_content_and_keep_their_charset(
    settings: Settings, isolated: Stack
) -> None:
    """Issue 20, defects 1 and 2: a PDF sent as application/octet-stream is read as a PDF,
    and a windows-1251 text attachment reaches extraction (as the classifier and the review
    page run it) as the words written, not mojibake."""
    port = free_port()
    settings = settings.model_copy(
        update={
            "smtp_enabled": True,
            "smtp_port": port,
            "smtp_allowed_recipients": ["triage@example.org"],
        }
    )
    message = EmailMessage()
    message["From"] = "Olga <olga@example.ru>"
    message["To"] = "triage@example.org"
    message["Subject"] = "Scan and invoice"
    message["Message-ID"] = "<scan-and-invoice@example.ru>"
    message.set_content("Two files attached.")
    pdf = make_pdf("Delivery note 77", title="Delivery note 77")
    message.add_attachment(pdf, maintype="application", subtype="octet-stream", filename="SCAN_77")
    message.add_attachment(
        "Счёт № 1234".encode("windows-1251"),
        maintype="text",
        subtype="plain",
        filename="schet.txt",
        params={"charset": "windows-1251"},
    )
    with TestClient(create_app(settings)):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            # CRLF line ends, as a mail client sends them (bare LF is defect 4, not this one).
            raw = message.as_bytes(policy=email.policy.SMTP)
            smtp.sendmail("olga@example.ru", ["triage@example.org"], raw)
        published = _published(isolated, topics.DOCUMENTS, 3)
    blobs = LocalBlobStore(settings.blob_dir)
    parts = {
        v["document"]["email"]["part"]: v["document"]["blob"]  # type: ignore[index]
        for v in (record["value"] for record in published)
    }
    assert set(parts) == {"body", "2", "3"}
    assert parts["2"]["media_type"] == "application/pdf"
    scan = extract_text(blobs.get(parts["2"]["sha256"]), parts["2"]["media_type"])
    assert scan.status is ExtractionStatus.OK
    assert "Delivery note 77" in scan.text
    assert parts["3"]["media_type"] == "text/plain; charset=windows-1251"
    invoice = extract_text(blobs.get(parts["3"]["sha256"]), parts["3"]["media_type"])
    assert invoice.text == normalise("Счёт № 1234")
    # What the review page and the status API show comes from the stored row.
    rows = dict(sql_rows(settings.database_url, "SELECT filename, media_type FROM document"))
    assert rows["SCAN_77"] == "application/pdf"
    assert rows["schet.txt"] == "text/plain; charset=windows-1251"


def test_smtp_mail_with_unquoted_parameters_keeps_its_parts_names_and_sender_name(
    settings: Settings, isolated: Stack
) -> None:
    """Issue 20, defect 7: an unquoted boundary with "=" (as Java mailers and Outlook send it)
    still splits the parts, an unquoted file name with spaces is kept whole, and the sender's
    display name travels beside the address."""
    port = free_port()
    settings = settings.model_copy(
        update={
            "smtp_enabled": True,
            "smtp_port": port,
            "smtp_allowed_recipients": ["triage@example.org"],
        }
    )
    pdf = make_pdf("Invoice March 2026", title="Invoice March 2026")
    raw = unquoted_parameters_mail(pdf)
    with TestClient(create_app(settings)):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.sendmail("anna@example.com", ["triage@example.org"], raw)
        published = _published(isolated, topics.DOCUMENTS, 2)
    values: list[Any] = [m["value"] for m in published]
    documents = {v["document"]["email"]["part"]: v["document"] for v in values}
    assert set(documents) == {"body", "2"}
    body, invoice = documents["body"], documents["2"]
    for document in (body, invoice):
        assert document["email"]["sender"] == "anna@example.com"
        assert document["email"]["sender_name"] == "Müller, Anna"
    blobs = LocalBlobStore(settings.blob_dir)
    assert blobs.get(body["blob"]["sha256"]) == b"Please find the invoice attached."
    assert invoice["filename"] == "Invoice March 2026.pdf"
    assert blobs.get(invoice["blob"]["sha256"]) == pdf
    rows = sql_rows(settings.database_url, "SELECT filename, media_type FROM document")
    assert sorted(rows, key=str) == sorted(
        [(None, "text/plain"), ("Invoice March 2026.pdf", "application/pdf")], key=str
    )


def test_a_saved_email_upload_becomes_body_and_attachments(
    client: TestClient, settings: Settings, isolated: Stack
) -> None:
    key = new_api_key(settings.database_url, "portal")
    raw = email_bytes("Invoice", "See attached.", attachment=make_pdf("Invoice 5"))
    response = client.post(
        "/v1/documents",
        headers={"X-API-Key": key},
        files={"files": ("forwarded.eml", raw, "message/rfc822")},
    )
    assert response.status_code == 202, response.text
    body, attachment = response.json()["documents"]
    assert attachment["filename"] == "invoice.pdf"
    status = client.get(attachment["status_url"], headers={"X-API-Key": key}).json()
    assert status["parent_document_id"] == body["document_id"]


def test_a_key_can_be_rotated_under_the_same_name(client: TestClient, settings: Settings) -> None:
    old = new_api_key(settings.database_url, "portal")
    files = {"files": ("a.txt", b"hello", "text/plain")}

    async def rotate() -> str:
        engine = make_async_engine(settings.database_url)
        store = ApiKeys(engine)
        assert await store.revoke("portal")
        new = await store.create("portal")
        await engine.dispose()
        return new

    new = asyncio.run(rotate())
    assert client.post("/v1/documents", files=files, headers={"X-API-Key": old}).status_code == 401
    assert client.post("/v1/documents", files=files, headers={"X-API-Key": new}).status_code == 202
    with pytest.raises(Exception, match="ux_api_key_live_name"):
        new_api_key(settings.database_url, "portal")


def test_a_key_over_its_rate_gets_429_and_others_carry_on(settings: Settings) -> None:
    limited = settings.model_copy(
        update={"uploads_per_minute_per_key": 6, "upload_burst_per_key": 2}
    )
    fast = new_api_key(settings.database_url, "fast")
    other = new_api_key(settings.database_url, "other")
    with TestClient(create_app(limited)) as client:
        before = _rate_limited(client.get("/metrics").text)

        def send(key: str, n: int) -> int:
            return client.post(
                "/v1/documents",
                files={"files": (f"note{n}.txt", f"note {n} {key[:6]}".encode(), "text/plain")},
                headers={"X-API-Key": key},
            ).status_code

        assert [send(fast, 1), send(fast, 2)] == [202, 202]
        refused = client.post(
            "/v1/documents",
            files={"files": ("note3.txt", b"note 3", "text/plain")},
            headers={"X-API-Key": fast},
        )
        assert send(other, 4) == 202
        metrics = client.get("/metrics").text
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 10
    # The counter is the process's: earlier tests may have counted into it.
    assert _rate_limited(metrics) == before + 1


def _rate_limited(metrics: str) -> float:
    line = r'^triage_ingest_uploads_total\{outcome="rate_limited"\} (\S+)$'
    found = re.search(line, metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_database_outage_is_503_with_retry_after_and_nothing_accepted(
    settings: Settings,
) -> None:
    broken = settings.model_copy(
        update={
            "database_url": "postgresql+psycopg://triage:triage@127.0.0.1:1/triage",
            "require_api_key": False,
        }
    )
    with TestClient(create_app(broken)) as client:
        response = client.post(
            "/v1/documents", files={"files": ("a.txt", b"an invoice, overdue", "text/plain")}
        )
        metrics = client.get("/metrics").text
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "nothing was accepted" in response.json()["detail"]
    assert 'triage_ingest_uploads_total{outcome="unavailable"}' in metrics


@pytest.mark.parametrize("unreadable", [False, True], ids=["named", "unreadable-record"])
def test_a_dead_lettered_document_shows_dead_lettered_with_its_reason(
    client: TestClient, settings: Settings, isolated: Stack, unreadable: bool
) -> None:
    """Uploaded, then dead-lettered by a stage (a letter on the real dead-letter topic, read
    by the real router): the status API says dead_lettered and why, not received forever.
    ``unreadable``: the stage could not decode the record, so its letter names no document,
    only the record's key (the document id), as ``dead_letter_for`` builds it."""
    from types import SimpleNamespace

    from triage_contracts import DeadLetterV1, ErrorClass, Producer
    from triage_router.app import create_app as router_app
    from triage_router.settings import Settings as RouterSettings
    from triage_runtime.kafka import UnprocessableError, dead_letter_for, encode_event

    key = new_api_key(settings.database_url, "portal")
    accepted = client.post(
        "/v1/documents",
        headers={"X-API-Key": key},
        files={"files": ("lost.txt", b"a document the classifier gives up on", "text/plain")},
    )
    assert accepted.status_code == 202, accepted.text
    [doc] = accepted.json()["documents"]
    status_url, headers = doc["status_url"], {"X-API-Key": key}
    assert client.get(status_url, headers=headers).json()["status"] == "received"

    producer = Producer(service="classifier", version="test")
    if unreadable:
        record = SimpleNamespace(
            topic=isolated.topic(topics.DOCUMENTS),
            partition=0,
            offset=0,
            key=doc["document_id"].encode(),
            value=b"{not json",
            headers=[],
        )
        error = UnprocessableError(ErrorClass.UNDECODABLE, "not JSON")
        letter = dead_letter_for(record, stage="classifier", producer=producer, error=error)
        assert letter.document_id is None
        expected = {"stage": "classifier", "error_class": "undecodable", "reason": "not JSON"}
    else:
        letter = DeadLetterV1(
            producer=producer,
            document_id=doc["document_id"],
            stage="classifier",
            error_class=ErrorClass.BLOB_MISSING,
            reason="blob is not in the blob store",
            source_topic=isolated.topic(topics.DOCUMENTS),
            source_partition=0,
            source_offset=0,
            original_value_b64="e30=",
        )
        expected = {
            "stage": "classifier",
            "error_class": "blob_missing",
            "reason": "blob is not in the blob store",
        }
    asyncio.run(
        produce(
            isolated.kafka_bootstrap,
            isolated.topic(topics.DEADLETTER),
            encode_event(letter),
            key=doc["document_id"].encode(),
        )
    )
    router_settings = RouterSettings(
        kafka_bootstrap=isolated.kafka_bootstrap,
        database_url=settings.database_url,
        topic_prefix=isolated.topic_prefix,
        group_id="it-router-dead-letters",
    )
    found: dict[str, object] = {}
    with TestClient(router_app(router_settings)):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = client.get(status_url, headers=headers).json()
            if found["status"] != "received":
                break
            time.sleep(0.2)
    assert found["status"] == "dead_lettered", found
    assert found["dead_letter"] == expected
    schema = client.get("/openapi.json").json()["components"]["schemas"]["DocumentStatus"]
    assert "dead_lettered" in schema["properties"]["status"]["enum"]


def _done_names(drop: Path, count: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(list((drop / "done").iterdir())) < count:
        time.sleep(0.1)
    return sorted(p.name.split("-", 1)[1] for p in (drop / "done").iterdir())


def test_drop_folder_waits_for_a_writer_that_pauses(
    settings: Settings, isolated: Stack, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    settings = settings.model_copy(
        update={"drop_dir": drop, "drop_poll_seconds": 0.2, "drop_settle_seconds": 4.0}
    )
    (drop / "inbox").mkdir(parents=True)
    whole = ("Please cancel the contract for account 1234. " * 200).encode()
    half = len(whole) // 2
    with TestClient(create_app(settings)):
        with (drop / "inbox" / "letter.txt").open("wb") as writer:
            writer.write(whole[:half])
            writer.flush()
            time.sleep(2.5)  # longer than the old one-second settle, shorter than the new
            assert not list((drop / "done").iterdir()), "taken while the writer paused"
            writer.write(whole[half:])
        assert _done_names(drop, 1, timeout=30) == ["letter.txt"]
    [document] = _published(isolated, topics.DOCUMENTS, 1)
    blob = document["value"]["document"]["blob"]  # type: ignore[index]
    assert blob["size_bytes"] == len(whole)
    assert blob["sha256"] == hashlib.sha256(whole).hexdigest()
    assert LocalBlobStore(settings.blob_dir).get(blob["sha256"]) == whole


def test_drop_folder_takes_a_renamed_in_file_at_once(
    settings: Settings, isolated: Stack, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    settings = settings.model_copy(
        update={"drop_dir": drop, "drop_poll_seconds": 0.2, "drop_settle_seconds": 300.0}
    )
    (drop / "inbox").mkdir(parents=True)
    staging = tmp_path / "staging"
    staging.mkdir()
    content = b"Invoice 12 is overdue."
    with TestClient(create_app(settings)):
        (staging / "invoice.txt").write_bytes(content)
        time.sleep(0.05)  # so the rename's ctime is after the last write's mtime
        started = time.monotonic()
        (staging / "invoice.txt").rename(drop / "inbox" / "invoice.txt")
        assert _done_names(drop, 1, timeout=20) == ["invoice.txt"]
        took = time.monotonic() - started
    assert took < 20, "a renamed-in file must not wait the 300 s settle interval"
    [document] = _published(isolated, topics.DOCUMENTS, 1)
    assert document["value"]["document"]["blob"]["sha256"] == hashlib.sha256(content).hexdigest()  # type: ignore[index]


def test_a_dropped_mail_that_cannot_be_parsed_is_dead_lettered_under_its_file_name(
    settings: Settings, isolated: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20: a mail dead letter names its .eml file (``triage dlq list`` shows it)."""

    def unreadable(raw: bytes) -> ParsedMessage:
        raise RecursionError("a parser bug the parser's own guard missed")

    # The parser never raises on input (tests/unit/test_hostile_inputs.py); a bug in it is
    # the one way a mail is dead-lettered today.
    monkeypatch.setattr(intake_module, "parse_email", unreadable)
    drop = tmp_path / "drop"
    settings = settings.model_copy(update={"drop_dir": drop, "drop_poll_seconds": 0.2})
    (drop / "inbox").mkdir(parents=True)
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "Invoice March.eml").write_bytes(email_bytes("Invoice", "See attached."))
    with TestClient(create_app(settings)):
        time.sleep(0.05)  # so the rename's ctime is after the write's mtime: taken at once
        (staging / "Invoice March.eml").rename(drop / "inbox" / "Invoice March.eml")
        [letter] = _published(isolated, topics.DEADLETTER, 1)
    assert letter["value"]["raw_name"] == "Invoice March.eml"  # type: ignore[index]
    assert letter["value"]["error_class"] == "malformed_input"  # type: ignore[index]


def test_drop_folder_decides_a_files_type_by_its_content(
    settings: Settings, isolated: Stack, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    settings = settings.model_copy(update={"drop_dir": drop, "drop_poll_seconds": 0.2})
    (drop / "inbox").mkdir(parents=True)
    for name in ("scan0042", "scan.bin"):
        (drop / "inbox" / name).write_bytes(make_pdf(f"Invoice {name}"))
    with TestClient(create_app(settings)):
        assert _done_names(drop, 2, timeout=30) == ["scan.bin", "scan0042"]
    documents = _published(isolated, topics.DOCUMENTS, 2)
    types = {m["value"]["document"]["blob"]["media_type"] for m in documents}  # type: ignore[index]
    assert types == {"application/pdf"}
    assert not list((drop / "failed").iterdir())
