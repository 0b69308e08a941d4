"""The IMAP connector against a real Dovecot: incremental, restart-safe, UIDVALIDITY-proof."""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from imapclient import IMAPClient
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from scripts.pdfgen import make_pdf
from tests.faults.harness import read_topics
from tests.helpers import table_rows, unquoted_parameters_mail
from tests.stack import Imap, Stack
from triage_cli.main import app as cli_app
from triage_contracts import Producer, topics
from triage_ingest import intake as intake_module
from triage_ingest.app import create_app
from triage_ingest.imap import TRIAGED_FLAG, ImapConnector
from triage_ingest.intake import Intake
from triage_ingest.settings import ImapAccount, PostProcess, Settings
from triage_ingest.store import IngestStore
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.kafka import make_broker
from triage_runtime.outbox import Outbox
from triage_text.email.result import ParsedMessage


def _imap(stack: Stack) -> Imap:
    assert stack.imap is not None
    return stack.imap


def _message(n: int, *, pdf: bool = False) -> bytes:
    message = EmailMessage()
    message["From"] = f"Customer {n} <customer{n}@example.com>"
    message["To"] = "support@example.org"
    message["Subject"] = f"Question number {n}"
    message["Message-ID"] = f"<q{n}.{secrets.token_hex(4)}@example.com>"
    message.set_content(f"Hello, this is question {n} about my invoice.")
    if pdf:
        message.add_attachment(
            make_pdf(f"Invoice {n}"), maintype="application", subtype="pdf", filename=f"inv{n}.pdf"
        )
    return message.as_bytes()


@pytest.fixture
def mailbox(isolated: Stack) -> Iterator[str]:
    """A fresh mailbox on the IMAP server, deleted afterwards."""
    imap = _imap(isolated)
    name = f"test-{secrets.token_hex(4)}"
    with _client(imap) as client:
        client.create_folder(name)
    yield name
    with _client(imap) as client:
        client.delete_folder(name)


def _client(imap: Imap) -> IMAPClient:
    context = ssl.create_default_context(cafile=imap.ca_file)
    client = IMAPClient(imap.host, port=imap.imaps_port, ssl=True, ssl_context=context)
    client.login(imap.user, imap.password)
    return client


def _append(imap: Imap, mailbox: str, messages: list[bytes]) -> None:
    with _client(imap) as client:
        for raw in messages:
            client.append(mailbox, raw)


def _account(imap: Imap, mailbox: str, **overrides: object) -> ImapAccount:
    values: dict[str, object] = {
        "name": "support",
        "host": imap.host,
        "port": imap.imaps_port,
        "tls": True,
        "ca_file": Path(imap.ca_file),
        "username": imap.user,
        "password": SecretStr(imap.password),
        "mailboxes": [mailbox],
        "poll_seconds": 300,
        **overrides,
    }
    return ImapAccount.model_validate(values)


def _document_count(database_url: str) -> int:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM document WHERE source_kind = 'imap'")
        ).scalar_one()
    engine.dispose()
    return int(count)


class Harness:
    """An Intake and store wired to the real broker and database."""

    def __init__(self, stack: Stack, database_url: str, blob_dir: Path) -> None:
        self.broker = make_broker(stack.kafka_bootstrap, client_id="test-imap")
        self.engine = make_async_engine(database_url)
        self.store = IngestStore(self.engine)
        self.intake = Intake(
            blobs=LocalBlobStore(blob_dir),
            broker=self.broker,
            store=self.store,
            outbox=Outbox(self.engine, self.broker, service="tests", topic_prefix=stack.topic("")),
            producer=Producer(service="tests", version="0"),
            documents_topic=stack.topic(topics.DOCUMENTS),
            deadletter_topic=stack.topic(topics.DEADLETTER),
        )

    async def poll(self, account: ImapAccount, mailbox: str) -> int:
        """Connect like a fresh connector process would and read the mailbox once."""
        connector = ImapConnector(self.intake, self.store, account)
        client = await asyncio.to_thread(connector._connect)
        try:
            return await connector.poll_mailbox(client, mailbox)
        finally:
            await asyncio.to_thread(client.logout)


@pytest.fixture
async def harness(isolated: Stack, clean_db: str, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(isolated, clean_db, tmp_path / "blobs")
    await h.broker.start()
    yield h
    await h.broker.stop()
    await h.engine.dispose()


async def test_second_poll_downloads_nothing_and_restart_loses_nothing(
    isolated: Stack, clean_db: str, mailbox: str, harness: Harness
) -> None:
    imap = _imap(isolated)
    _append(imap, mailbox, [_message(1, pdf=True), _message(2), _message(3)])
    account = _account(imap, mailbox)

    assert await harness.poll(account, mailbox) == 3
    assert _document_count(clean_db) == 4  # three bodies and one PDF attachment
    assert await harness.poll(account, mailbox) == 0, "the second pass downloads nothing"

    # A restart: a new connector reads the cursor from PostgreSQL and only new mail.
    _append(imap, mailbox, [_message(4)])
    assert await harness.poll(account, mailbox) == 1
    assert _document_count(clean_db) == 5

    # A crash after ingesting but before saving the cursor: the message is read again,
    # and it does not become a second document.
    validity, last_uid = await harness.store.imap_cursor("support", mailbox) or (0, 0)
    await harness.store.save_imap_cursor(
        "support", mailbox, uidvalidity=validity, last_uid=last_uid - 2
    )
    assert await harness.poll(account, mailbox) == 2
    assert _document_count(clean_db) == 5

    with _client(imap) as client:
        client.select_folder(mailbox, readonly=True)
        flags = client.get_flags(client.search(["ALL"]))
    assert all(TRIAGED_FLAG in f for f in flags.values()), "ingested mail is flagged"


async def test_a_uidvalidity_change_is_survived(
    isolated: Stack, clean_db: str, mailbox: str, harness: Harness
) -> None:
    imap = _imap(isolated)
    messages = [_message(1), _message(2, pdf=True)]
    _append(imap, mailbox, messages)
    account = _account(imap, mailbox, post_process=PostProcess.LEAVE)
    assert await harness.poll(account, mailbox) == 2
    before = await harness.store.imap_cursor("support", mailbox)

    # The server renumbers the mailbox: deleting and re-creating it gives a new UIDVALIDITY.
    with _client(imap) as client:
        client.delete_folder(mailbox)
        client.create_folder(mailbox)
    _append(imap, mailbox, [*messages, _message(3)])

    assert await harness.poll(account, mailbox) == 3, "everything is read again once"
    after = await harness.store.imap_cursor("support", mailbox)
    assert before is not None and after is not None and after[0] != before[0]
    assert _document_count(clean_db) == 4, "only the new message made new documents"
    assert await harness.poll(account, mailbox) == 0


async def test_move_post_processing_and_starttls(
    isolated: Stack, clean_db: str, mailbox: str, harness: Harness
) -> None:
    imap = _imap(isolated)
    target = f"{mailbox}-done"
    with _client(imap) as client:
        client.create_folder(target)
    try:
        _append(imap, mailbox, [_message(1)])
        account = _account(
            imap,
            mailbox,
            port=imap.port,
            tls=False,
            starttls=True,
            post_process=PostProcess.MOVE,
            move_to=target,
        )
        assert await harness.poll(account, mailbox) == 1
        with _client(imap) as client:
            assert client.select_folder(mailbox)[b"EXISTS"] == 0
            assert client.select_folder(target)[b"EXISTS"] == 1
    finally:
        with _client(imap) as client:
            client.delete_folder(target)


async def test_a_mail_with_unquoted_parameters_keeps_its_parts_names_and_sender_name(
    isolated: Stack, clean_db: str, mailbox: str, harness: Harness
) -> None:
    """Issue 20, defect 7, through Dovecot: an unquoted boundary with "=" splits the parts,
    an unquoted file name with spaces is kept whole, the sender's display name is kept."""
    imap = _imap(isolated)
    pdf = make_pdf("Invoice March 2026")
    _append(imap, mailbox, [unquoted_parameters_mail(pdf)])

    assert await harness.poll(_account(imap, mailbox), mailbox) == 1

    records = await read_topics(isolated.kafka_bootstrap, [isolated.topic(topics.DOCUMENTS)])
    documents = {r["value"]["document"]["email"]["part"]: r["value"]["document"] for r in records}
    assert set(documents) == {"body", "2"}
    assert documents["2"]["filename"] == "Invoice March 2026.pdf"
    assert documents["2"]["blob"]["media_type"] == "application/pdf"
    for document in documents.values():
        assert document["email"]["sender"] == "anna@example.com"
        assert document["email"]["sender_name"] == "Müller, Anna"
        assert document["email"]["mailbox"] == mailbox
    engine = create_engine(clean_db)
    with engine.connect() as conn:
        names = conn.execute(text("SELECT filename FROM document ORDER BY filename")).all()
    engine.dispose()
    assert [name for (name,) in names] == ["Invoice March 2026.pdf", None]


async def test_a_mail_dead_letter_names_its_mailbox_in_triage_dlq_list(
    isolated: Stack,
    clean_db: str,
    mailbox: str,
    harness: Harness,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 20: ``triage dlq`` shows the mailbox a dead-lettered mail was read from."""

    def unreadable(raw: bytes) -> ParsedMessage:
        raise RecursionError("a parser bug the parser's own guard missed")

    # The parser never raises on input (tests/unit/test_hostile_inputs.py); a bug in it is
    # the one way a mail is dead-lettered today.
    monkeypatch.setattr(intake_module, "parse_email", unreadable)
    imap = _imap(isolated)
    _append(imap, mailbox, [_message(1)])

    assert await harness.poll(_account(imap, mailbox), mailbox) == 1

    [letter] = await read_topics(isolated.kafka_bootstrap, [isolated.topic(topics.DEADLETTER)])
    assert letter["value"]["source"] == {"kind": "imap", "name": "support"}
    assert letter["value"]["mailbox"] == mailbox
    monkeypatch.setenv("TRIAGE_KAFKA_BOOTSTRAP", isolated.kafka_bootstrap)
    monkeypatch.setenv("TRIAGE_TOPIC_PREFIX", isolated.topic_prefix)
    listed = await asyncio.to_thread(CliRunner().invoke, cli_app, ["dlq", "list"])
    assert listed.exit_code == 0, listed.output
    [row] = table_rows(listed.output)
    assert row["error class"] == "malformed_input"
    assert row["from"] == f"imap:support({mailbox})", listed.output


def test_idle_picks_up_new_mail_without_waiting_for_a_poll(
    isolated: Stack, clean_db: str, mailbox: str, tmp_path: Path
) -> None:
    imap = _imap(isolated)
    settings = Settings(
        kafka_bootstrap=isolated.kafka_bootstrap,
        database_url=clean_db,
        blob_dir=tmp_path / "blobs",
        topic_prefix=isolated.topic_prefix,
        imap_accounts=[_account(imap, mailbox)],  # polls only every 300 s
    )
    with TestClient(create_app(settings)):
        time.sleep(2)  # the connector's first pass finds the empty mailbox and starts IDLE
        _append(imap, mailbox, [_message(1)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _document_count(clean_db) < 1:
            time.sleep(0.2)
        assert _document_count(clean_db) == 1, "IDLE delivered the new message"
