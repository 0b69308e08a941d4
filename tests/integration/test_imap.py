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
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from scripts.pdfgen import make_pdf
from tests.faults.harness import read_topics
from tests.helpers import table_rows, unquoted_parameters_mail
from tests.kafkatools import collect
from tests.stack import Imap, Stack, require_imap
from triage_cli.main import app as cli_app
from triage_contracts import Producer, topics
from triage_ingest import intake as intake_module
from triage_ingest.app import create_app
from triage_ingest.imap import TRIAGED_FLAG, ImapConnector, MessageIntakeError
from triage_ingest.intake import Intake
from triage_ingest.mailrules import PostProcess
from triage_ingest.settings import ImapAccount, Settings
from triage_ingest.store import IngestStore
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.kafka import make_broker
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.outbox import Outbox
from triage_text.email.result import ParsedMessage


def _imap(stack: Stack) -> Imap:
    return require_imap(stack)


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
        self.blob_dir = blob_dir
        self.broker = make_broker(
            KafkaConnection(kafka_bootstrap=stack.kafka_bootstrap), client_id="test-imap"
        )
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


async def test_a_uidvalidity_change_downloads_only_mail_not_known(
    isolated: Stack, clean_db: str, mailbox: str, harness: Harness
) -> None:
    """Issue 20, defect 8: after a reset, known mail is told by its Message-ID and size and
    not downloaded again; mail without a Message-ID is, and deduplicates by its bytes."""
    imap = _imap(isolated)
    no_id = b"From: a@example.com\r\nSubject: no id\r\n\r\nA message without a Message-ID.\r\n"
    messages = [_message(1), _message(2, pdf=True), no_id]
    _append(imap, mailbox, messages)
    account = _account(imap, mailbox, post_process=PostProcess.LEAVE)
    assert await harness.poll(account, mailbox) == 3
    assert _document_count(clean_db) == 4
    before = await harness.store.imap_cursor("support", mailbox)

    # The server renumbers the mailbox: deleting and re-creating it gives a new UIDVALIDITY.
    with _client(imap) as client:
        client.delete_folder(mailbox)
        client.create_folder(mailbox)
    _append(imap, mailbox, [*messages, _message(3)])

    skipped = _imap_items("known_skipped")
    assert await harness.poll(account, mailbox) == 2, "only the one without an id and the new"
    assert _imap_items("known_skipped") - skipped == 2
    after = await harness.store.imap_cursor("support", mailbox)
    assert before is not None and after is not None and after[0] != before[0]
    assert after[1] == 4, "the cursor passed the known mail too"
    assert _document_count(clean_db) == 5, "only the new message made new documents"
    assert await harness.poll(account, mailbox) == 0


async def test_a_copy_in_another_mailbox_is_the_same_documents(
    isolated: Stack, clean_db: str, mailbox: str, harness: Harness
) -> None:
    """Issue 20, defect 8: a mail copied into a new mailbox with a header added (a migration)
    is the documents it already was; another mail reusing its Message-ID is new ones."""
    imap = _imap(isolated)
    other = f"{mailbox}-migrated"
    with _client(imap) as client:
        client.create_folder(other)
    try:
        original = _message(1, pdf=True)
        _append(imap, mailbox, [original])
        account = _account(imap, mailbox, mailboxes=[mailbox, other])
        assert await harness.poll(account, mailbox) == 1
        first = _document_ids(clean_db)
        assert len(first) == 2

        copy = b"X-Migrated-From: old-server\r\n" + original
        reuse = original.replace(b"about my invoice", b"about something else")
        assert reuse != original
        _append(imap, other, [copy, reuse])
        assert await harness.poll(account, other) == 2
        ids = _document_ids(clean_db)
        assert first <= ids
        assert len(ids) == 4, "the copy made none; the other mail its own two"
    finally:
        with _client(imap) as client:
            client.delete_folder(other)


def _imap_items(outcome: str) -> float:
    labels = {"kind": "imap", "outcome": outcome}
    return REGISTRY.get_sample_value("triage_ingest_connector_items_total", labels) or 0.0


def _document_ids(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT document_id FROM document")).scalars().all()
    engine.dispose()
    return set(ids)


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


def _items(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "triage_ingest_connector_items_total", {"kind": "imap", "outcome": outcome}
        )
        or 0.0
    )


async def test_a_move_to_folder_that_does_not_exist_is_created_and_the_mailbox_moves_on(
    isolated: Stack, clean_db: str, mailbox: str, harness: Harness
) -> None:
    imap = _imap(isolated)
    target = f"{mailbox}-missing"
    _append(imap, mailbox, [_message(1), _message(2)])
    account = _account(imap, mailbox, post_process=PostProcess.MOVE, move_to=target)
    try:
        assert await harness.poll(account, mailbox) == 2, "both messages taken in one pass"
        assert _document_count(clean_db) == 2
        with _client(imap) as client:
            assert client.select_folder(mailbox)[b"EXISTS"] == 0
            assert client.select_folder(target)[b"EXISTS"] == 2
        _append(imap, mailbox, [_message(3)])
        assert await harness.poll(account, mailbox) == 1, "later mail still arrives"
    finally:
        with _client(imap) as client:
            if client.folder_exists(target):
                client.delete_folder(target)


async def test_ingested_counts_only_messages_that_made_new_documents(
    isolated: Stack, clean_db: str, mailbox: str, harness: Harness
) -> None:
    imap = _imap(isolated)
    _append(imap, mailbox, [_message(1, pdf=True), _message(2)])
    account = _account(imap, mailbox, post_process=PostProcess.LEAVE)
    ingested, known = _items("ingested"), _items("known")
    assert await harness.poll(account, mailbox) == 2
    assert (_items("ingested") - ingested, _items("known") - known) == (2, 0)

    # Read again from the start (a lost cursor): downloads, but no new documents.
    validity, _ = await harness.store.imap_cursor("support", mailbox) or (0, 0)
    await harness.store.save_imap_cursor("support", mailbox, uidvalidity=validity, last_uid=0)
    assert await harness.poll(account, mailbox) == 2
    assert (_items("ingested") - ingested, _items("known") - known) == (2, 2)
    assert _document_count(clean_db) == 3


POISON_TRIGGER = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused by the test: %', NEW.filename; END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON document
    FOR EACH ROW WHEN (NEW.filename = 'poison.txt') EXECUTE FUNCTION refuse_poison();
"""


@pytest.fixture
def poison_refused(clean_db: str) -> Iterator[None]:
    """PostgreSQL refuses any document named poison.txt, as a message-specific fault."""
    engine = create_engine(clean_db)
    with engine.begin() as conn:
        conn.execute(text(POISON_TRIGGER))
    yield
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse_poison ON document"))
        conn.execute(text("DROP FUNCTION refuse_poison()"))
    engine.dispose()


def _poison(n: int) -> bytes:
    message = EmailMessage()
    message["From"] = "sender@example.com"
    message["Subject"] = f"Poison {n}"
    message.set_content(f"Poison message {n}.")
    message.add_attachment(b"bad", maintype="text", subtype="plain", filename="poison.txt")
    return message.as_bytes()


async def test_a_message_that_keeps_failing_is_dead_lettered_and_the_mailbox_moves_on(
    isolated: Stack, clean_db: str, mailbox: str, harness: Harness, poison_refused: None
) -> None:
    imap = _imap(isolated)
    _append(imap, mailbox, [_poison(1), _message(2), _poison(3), _message(4)])
    account = _account(imap, mailbox, max_attempts=3)
    with _client(imap) as client:
        validity = int(client.select_folder(mailbox, readonly=True)[b"UIDVALIDITY"])
        uids = sorted(client.search(["ALL"]))
    # The third message crashed the process three times before: its starts are counted.
    for _ in range(3):
        await harness.store.begin_imap_attempt(
            "support", mailbox, uidvalidity=validity, uid=uids[2]
        )

    # Each pass is a fresh connector, as after a restart: the attempts are in PostgreSQL.
    for attempt in (1, 2):
        with pytest.raises(MessageIntakeError, match="refused by the test"):
            await harness.poll(account, mailbox)
        assert _document_count(clean_db) == 0, f"attempt {attempt}: nothing got past"
    assert await harness.poll(account, mailbox) == 4, "the third try gives up and moves on"
    assert _document_count(clean_db) == 2, "the two good messages' bodies"
    assert await harness.poll(account, mailbox) == 0

    letters = await collect(
        isolated.kafka_bootstrap,
        [isolated.topic(topics.DEADLETTER)],
        until=lambda ms: len(ms) >= 2,
    )
    reasons = {str(m["value"]["reason"]).split(":")[0]: str(m["value"]["reason"]) for m in letters}
    first, third = (
        reasons[f"IMAP {mailbox} UID {uids[0]}"],
        reasons[f"IMAP {mailbox} UID {uids[2]}"],
    )
    assert "intake failed 3 times" in first and "refused by the test: poison.txt" in first
    assert "intake failed 3 times; last: the process stopped" in third
    assert all(m["value"]["error_class"] == "connector_error" for m in letters)
    for letter in letters:
        kept = harness.intake._blobs.get(str(letter["value"]["raw_blob"]["sha256"]))
        assert b"Poison message" in kept, "the raw mail is kept"
    engine = create_engine(clean_db)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM imap_attempt")).scalar_one() == 0
    engine.dispose()
    with _client(imap) as client:
        client.select_folder(mailbox, readonly=True)
        flags = client.get_flags(uids)
    assert [TRIAGED_FLAG in flags[uid] for uid in uids] == [False, True, False, True], (
        "dead-lettered mail stays unflagged in the mailbox"
    )


async def test_attempts_counted_at_once_are_each_counted(
    isolated: Stack, clean_db: str, harness: Harness
) -> None:
    starts = await asyncio.gather(
        *(
            harness.store.begin_imap_attempt("support", "INBOX", uidvalidity=7, uid=42)
            for _ in range(8)
        )
    )
    assert sorted(earlier for earlier, _ in starts) == list(range(8))


def test_a_failing_mailbox_shows_in_readyz_and_metrics(
    isolated: Stack, clean_db: str, mailbox: str, tmp_path: Path
) -> None:
    imap = _imap(isolated)
    missing = f"{mailbox}-absent"
    _append(imap, mailbox, [_message(1)])
    mailbox_errors, auth_errors = _items("mailbox_error"), _items("auth_error")
    settings = Settings(
        kafka_bootstrap=isolated.kafka_bootstrap,
        database_url=clean_db,
        blob_dir=tmp_path / "blobs",
        topic_prefix=isolated.topic_prefix,
        imap_accounts=[
            _account(imap, mailbox, mailboxes=[mailbox, missing]),
            _account(imap, mailbox, name="wrong", password=SecretStr("not-the-password")),
        ],
    )
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            body = client.get("/readyz").json()
            boxes = body.get("serving", {}).get("imap", {})
            if (
                boxes.get(f"support/{mailbox}", {}).get("last_success_at")
                and boxes.get(f"support/{missing}", {}).get("last_error")
                and boxes.get(f"wrong/{mailbox}", {}).get("last_error")
            ):
                break
            time.sleep(0.2)
        answer = client.get("/readyz")
        metrics = client.get("/metrics").text
    assert answer.status_code == 200, "one failing mailbox does not take uploads out of service"
    body = answer.json()
    assert body["status"] == "degraded"
    assert sorted(body["degraded"]) == [f"imap support/{missing}", f"imap wrong/{mailbox}"]
    good, bad = (
        body["serving"]["imap"][f"support/{mailbox}"],
        body["serving"]["imap"][f"support/{missing}"],
    )
    assert (good["status"], good["backlog"], good["last_error"]) == ("ok", 0, None)
    assert bad["status"] == "failing" and bad["last_success_at"] is None
    assert f"cannot open mailbox '{missing}'" in bad["last_error"]
    labels = f'account="support",mailbox="{missing}"'
    assert f"triage_ingest_imap_mailbox_failing{{{labels}}} 1.0" in metrics
    assert f'triage_ingest_imap_mailbox_failing{{account="support",mailbox="{mailbox}"}} 0.0' in (
        metrics
    )
    refused = body["serving"]["imap"][f"wrong/{mailbox}"]["last_error"]
    assert refused.startswith("login refused:") and "AUTHENTICATIONFAILED" in refused
    assert _items("mailbox_error") > mailbox_errors
    assert _items("auth_error") > auth_errors


async def test_a_message_over_the_size_limit_is_dead_lettered_unread(
    isolated: Stack, clean_db: str, mailbox: str, harness: Harness
) -> None:
    """Issue 20, defect 9: IMAP had no size limit (a 35 MB mail was taken)."""
    imap = _imap(isolated)
    big = _message(1, pdf=True) + b"\n" + b"x" * 20_000 + b"\n"
    _append(imap, mailbox, [big, _message(2)])
    account = _account(imap, mailbox)  # flags what it ingests
    connector = ImapConnector(harness.intake, harness.store, account, max_bytes=10_000)
    client = await asyncio.to_thread(connector._connect)
    try:
        assert await connector.poll_mailbox(client, mailbox) == 1, "only the small one is read"
        assert await connector.poll_mailbox(client, mailbox) == 0, "and the big one not again"
    finally:
        await asyncio.to_thread(client.logout)
    assert _document_count(clean_db) == 1
    [letter] = await read_topics(isolated.kafka_bootstrap, [isolated.topic(topics.DEADLETTER)])
    value = letter["value"]
    assert value["error_class"] == "oversize"
    assert value["source"] == {"kind": "imap", "name": "support"}
    assert f"in {mailbox} is " in value["reason"]
    assert "over the 10000-byte limit; left on the server unread" in value["reason"]
    # Only the header was downloaded and kept: it names the mail, its body never came.
    kept = LocalBlobStore(harness.blob_dir).get(value["raw_blob"]["sha256"])
    assert b"Subject: Question number 1" in kept and b"x" * 100 not in kept
    with _client(imap) as check:
        check.select_folder(mailbox, readonly=True)
        flags = check.get_flags(check.search(["ALL"]))
    big_uid, small_uid = sorted(flags)
    assert TRIAGED_FLAG not in flags[big_uid], "the big message is left as it was"
    assert TRIAGED_FLAG in flags[small_uid]
