"""The SMTP receiver against real Kafka and PostgreSQL, spoken to by smtplib (issue 20)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import SecretStr

from tests.faults.harness import read_topics
from tests.helpers import (
    email_bytes,
    free_port,
    isolated_ingest_settings,
    self_signed_certificate,
    sql_rows,
)
from tests.kafkatools import collect
from tests.stack import Stack
from triage_contracts import topics
from triage_ingest.app import create_app
from triage_ingest.settings import Settings
from triage_runtime.blobstore import LocalBlobStore


def _outcome(outcome: str) -> float:
    labels = {"kind": "smtp", "outcome": outcome}
    return REGISTRY.get_sample_value("triage_ingest_connector_items_total", labels) or 0.0


def _published(stack: Stack, count: int) -> list[dict[str, Any]]:
    return asyncio.run(
        collect(
            stack.kafka_bootstrap,
            [stack.topic(topics.DOCUMENTS)],
            until=lambda ms: len(ms) >= count,
        )
    )


def _all_published(stack: Stack) -> list[dict[str, Any]]:
    return asyncio.run(read_topics(stack.kafka_bootstrap, [stack.topic(topics.DOCUMENTS)]))


@pytest.fixture
def settings(isolated: Stack, clean_db: str, tmp_path: Path) -> Settings:
    return isolated_ingest_settings(
        isolated,
        clean_db,
        tmp_path,
        smtp_enabled=True,
        smtp_port=free_port(),
        smtp_allowed_recipients=["triage@example.org", "@queues.example.org"],
        max_document_bytes=100_000,
    )


@pytest.fixture
def receiver(settings: Settings) -> Iterator[Settings]:
    with TestClient(create_app(settings)):
        yield settings


def _bare_lf_mail() -> bytes:
    # As some mailers and scripts write files: LF line ends, lines far over 1,001 bytes in
    # all (the whole message is one "line" to a reader that waits for CRLF).
    lines = [
        b"From: Dana <dana@example.com>",
        b"To: triage@example.org",
        b"Subject: Refund for order 55",
        b"Message-ID: <bare-lf@example.com>",
        b"",
        b"Please refund order 55.",
        *[b"Line %d of a long letter about the refund." % i for i in range(60)],
        b".signature: a line that starts with a dot",
    ]
    return b"\n".join(lines) + b"\n"


def test_a_bare_lf_mail_is_taken_as_sent(receiver: Settings, isolated: Stack) -> None:
    """Issue 20, defect 4: refused on main with a permanent "500 Line too long"."""
    mail = _bare_lf_mail()
    assert len(mail) > 2000 and b"\r\n" not in mail
    with smtplib.SMTP("127.0.0.1", receiver.smtp_port, timeout=10) as smtp:
        # smtplib sends bytes as they are (it fixes line ends of str only), dot-stuffing the
        # line that starts with a dot; it adds the CRLF "." CRLF that ends the data.
        assert smtp.sendmail("dana@example.com", ["triage@example.org"], mail) == {}
    [document] = _published(isolated, 1)
    value = document["value"]
    assert value["document"]["email"]["message_id"] == "bare-lf@example.com"
    body = LocalBlobStore(receiver.blob_dir).get(value["document"]["blob"]["sha256"])
    assert b"Line 59 of a long letter" in body
    [(raw_sha,)] = sql_rows(receiver.database_url, "SELECT raw_sha256 FROM document_raw")
    # The message is kept as sent: bare LF line ends, the stuffed dot taken off again.
    assert LocalBlobStore(receiver.blob_dir).get(raw_sha) == mail + b"\r\n"


def test_every_refusal_is_logged_and_counted(
    receiver: Settings, isolated: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 20, defect 4: 552 and 500 refusals were neither logged nor counted."""
    before = {o: _outcome(o) for o in ("recipient_refused", "too_large", "protocol_error")}
    caplog.set_level(logging.WARNING, logger="triage_ingest.smtp")
    with smtplib.SMTP("127.0.0.1", receiver.smtp_port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("dana@example.com", ["stranger@example.net"], b"Subject: x\r\n\r\nx")
        # Declared too big (ESMTP SIZE): 552 at MAIL FROM.
        with pytest.raises(smtplib.SMTPSenderRefused) as declared:
            smtp.sendmail("dana@example.com", ["triage@example.org"], b"x" * 200_000)
        assert declared.value.smtp_code == 552
        smtp.rset()
        # Too big as it streams, with CRLF lines and as one bare-LF "line": 552 both times.
        for too_big in (b"Subject: big\r\n\r\n" + b"x" * 98 + b"\r\n", b"Subject: big\n\n"):
            assert smtp.mail("dana@example.com")[0] == 250
            assert smtp.rcpt("triage@example.org")[0] == 250
            code, _ = smtp.data(too_big + (b"x" * 98 + too_big[-1:]) * 2000)
            assert code == 552
        assert smtp.docmd("DATA")[0] == 503  # out of sequence
    assert _outcome("recipient_refused") == before["recipient_refused"] + 1
    assert _outcome("too_large") == before["too_large"] + 3
    assert _outcome("protocol_error") == before["protocol_error"] + 1
    refusals = [vars(r) for r in caplog.records if r.getMessage() == "smtp refused"]
    assert [r["smtp_reply"][:3] for r in refusals] == ["550", "552", "552", "552", "503"]
    assert {r["mail_from"] for r in refusals[:1]} == {"dana@example.com"}
    assert all(r["peer"] == "127.0.0.1" for r in refusals)
    assert sql_rows(receiver.database_url, "SELECT count(*) FROM document") == [(0,)]


def test_envelope_recipients_and_authentication_results_become_metadata(
    receiver: Settings, isolated: Stack
) -> None:
    mail = (
        b"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=example.com;\r\n"
        b"  dkim=pass header.d=example.com\r\n"
        b"Authentication-Results: evil.example.net; spf=pass (added by the sender)\r\n"
    ) + email_bytes("Two queues", "One mail for billing and support.")
    with smtplib.SMTP("127.0.0.1", receiver.smtp_port, timeout=10) as smtp:
        refused = smtp.sendmail(
            "dana@example.com",
            ["billing@queues.example.org", "support@queues.example.org", "x@example.net"],
            mail,
        )
    assert set(refused) == {"x@example.net"}
    # One mail, however many recipients: one set of documents (identity is the bytes).
    [document] = _published(isolated, 1)
    assert document["value"]["document"]["metadata"] == {
        "envelope_to": "billing@queues.example.org, support@queues.example.org",
        "authentication_results": (
            "mx.example.org; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com"
        ),
    }
    assert len(_all_published(isolated)) == 1


def test_starttls_and_auth_guard_the_receiver(
    settings: Settings, isolated: Stack, tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    settings = settings.model_copy(
        update={
            "smtp_tls_cert_file": cert,
            "smtp_tls_key_file": key,
            "smtp_auth_username": "relay",
            "smtp_auth_password": SecretStr("s3cret-relay"),
        }
    )
    context = ssl.create_default_context(cafile=str(cert))
    before = {o: _outcome(o) for o in ("auth_required", "auth_failed")}
    mail = email_bytes("Secured", "Sent over TLS by a logged-in relay.")
    with TestClient(create_app(settings)):
        with smtplib.SMTP("127.0.0.1", settings.smtp_port, timeout=10) as smtp:
            smtp.ehlo()
            assert smtp.has_extn("starttls")
            assert not smtp.has_extn("auth"), "no AUTH offered before TLS"
            with pytest.raises(smtplib.SMTPSenderRefused) as unauthenticated:
                smtp.sendmail("dana@example.com", ["triage@example.org"], mail)
            assert unauthenticated.value.smtp_code == 530
            smtp.starttls(context=context)
            smtp.ehlo()
            assert smtp.has_extn("auth")
            smtp.user, smtp.password = "relay", "guessed"
            with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
                smtp.auth("PLAIN", smtp.auth_plain)  # one try (login() tries each mechanism)
            assert wrong.value.smtp_code == 535
            with pytest.raises(smtplib.SMTPSenderRefused):
                smtp.sendmail("dana@example.com", ["triage@example.org"], mail)
            smtp.login("relay", "s3cret-relay")
            assert smtp.sendmail("dana@example.com", ["triage@example.org"], mail) == {}
        [document] = _published(isolated, 1)
    assert document["value"]["document"]["email"]["subject"] == "Secured"
    assert _outcome("auth_required") == before["auth_required"] + 2
    assert _outcome("auth_failed") == before["auth_failed"] + 1


def test_the_same_mail_in_two_concurrent_transactions_is_one_set_of_documents(
    receiver: Settings, isolated: Stack
) -> None:
    """A relay that delivers one mail per recipient, at once: its bytes are its identity, so
    it becomes documents once, which keep the envelope_to of the transaction that won."""
    mail = email_bytes("Both queues", "For billing and support.", attachment=b"%PDF-1.4 x")

    def send(recipient: str) -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", receiver.smtp_port, timeout=20) as smtp:
            return smtp.sendmail("dana@example.com", [recipient], mail)

    async def both() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(
                asyncio.to_thread(send, f"{queue}@queues.example.org")
                for queue in ("billing", "support")
            )
        )

    assert asyncio.run(both()) == [{}, {}]
    records = _all_published(isolated)
    assert len({r["key"] for r in records}) == 2, "one body, one attachment"
    assert sql_rows(receiver.database_url, "SELECT count(*) FROM document") == [(2,)]
    [envelope_to] = {r["value"]["document"]["metadata"]["envelope_to"] for r in records}
    assert envelope_to in {"billing@queues.example.org", "support@queues.example.org"}


def test_a_mail_that_cannot_be_stored_is_deferred_logged_and_counted(
    receiver: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    before = _outcome("deferred")
    caplog.set_level(logging.WARNING, logger="triage_ingest.smtp")
    # The blob store breaks under the running receiver: its root becomes a file.
    shutil.rmtree(receiver.blob_dir, ignore_errors=True)
    receiver.blob_dir.write_bytes(b"not a directory")
    with (
        smtplib.SMTP("127.0.0.1", receiver.smtp_port, timeout=10) as smtp,
        pytest.raises(smtplib.SMTPDataError) as deferred,
    ):
        smtp.sendmail("dana@example.com", ["triage@example.org"], email_bytes("Later", "x"))
    assert deferred.value.smtp_code == 451, "a 4xx: the sending server tries again later"
    assert _outcome("deferred") == before + 1
    refusals = [vars(r) for r in caplog.records if r.getMessage() == "smtp refused"]
    assert [r["smtp_reply"][:3] for r in refusals] == ["451"]


def test_required_starttls_refuses_mail_before_it(
    settings: Settings, isolated: Stack, tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    settings = settings.model_copy(
        update={
            "smtp_tls_cert_file": cert,
            "smtp_tls_key_file": key,
            "smtp_require_starttls": True,
        }
    )
    mail = email_bytes("Plain", "Sent without TLS first.")
    with TestClient(create_app(settings)):
        with smtplib.SMTP("127.0.0.1", settings.smtp_port, timeout=10) as smtp:
            with pytest.raises(smtplib.SMTPSenderRefused) as plain:
                smtp.sendmail("dana@example.com", ["triage@example.org"], mail)
            assert plain.value.smtp_code == 530
            smtp.starttls(context=ssl.create_default_context(cafile=str(cert)))
            assert smtp.sendmail("dana@example.com", ["triage@example.org"], mail) == {}
        [document] = _published(isolated, 1)
    assert document["value"]["document"]["email"]["subject"] == "Plain"
