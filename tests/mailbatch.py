"""A mixed batch of real-looking mails, sent through IMAP, SMTP and the drop folder, and the
table of what became of them (``tests/faults/test_mail_batch.py``, ``bench/mail_batch.py``).

Every mail is built here in code from the shipped synthetic letters (``data/sample/train``),
deterministic from a seed. Each carries a tag ``[mb NN]`` at the end of its subject, so a
document (whose event carries the subject) and a dead-lettered raw mail are traced back to
the mail they came from whatever the connector did to its line endings or identity.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import re
import smtplib
import ssl
import time
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from imapclient import IMAPClient
from sqlalchemy import create_engine, text

from scripts.pdfgen import make_pdf
from tests.faults.harness import read_topics
from tests.helpers import REPO_ROOT
from tests.outcomes import Fate, judge, outcomes_reached
from triage_contracts import topics
from triage_ingest.imap import TRIAGED_FLAG
from triage_text.email.parse import parse_email

TRAIN_DIR = REPO_ROOT / "data" / "sample" / "train"
TAG = re.compile(rb"\[mb (\d{2})\]")
CONNECTORS = ("imap", "smtp", "folder")
"""Source kinds of the three mail connectors, in the order the table shows them."""
RECIPIENT = "triage@example.org"

# Russian on purpose: its letters look like Latin ones to ruff.
CYRILLIC = (
    "Добрый день!\n\nНаправляем счёт № {n} за услуги поддержки за март. "  # noqa: RUF001
    "Просим оплатить до конца месяца.\nСумма: 48 500,00 руб.\n\n"  # noqa: RUF001
    "С уважением,\nбухгалтерия"  # noqa: RUF001
)
POLISH = (
    "Dzień dobry,\n\nw załączeniu przesyłam fakturę nr {n}. Proszę o płatność w ciągu "
    "14 dni.\nŻółta ćma leży na łące.\n\nPozdrawiam,\nKsięgowość"
)
JAPANESE = (
    "お世話になっております。\n\n請求書番号 {n} の件でご連絡いたします。"
    "ログインできない問題が続いております。\nご確認をお願いいたします。\n\n山田"
)
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPj/HwADAgH/eL9GtQAAAABJRU5ErkJggg=="
)


@dataclass(frozen=True, slots=True)
class Mail:
    """One mail of the batch: its tag number, what kind it is and its bytes."""

    index: int
    kind: str
    raw: bytes

    @property
    def tag(self) -> str:
        """The tag at the end of its subject."""
        return f"[mb {self.index:02d}]"

    @property
    def parts(self) -> int:
        """Documents the email parser makes of it (the intake's own code path)."""
        return len(parse_email(self.raw).parts)


class _Maker:
    """Builds the mails of one batch from a seeded generator."""

    def __init__(self, rng: random.Random, route: str) -> None:
        self.rng = rng
        self.route = f".{route}@mail.example.com" if route else "@mail.example.com"
        self.texts = sorted(TRAIN_DIR.glob("*/*.txt"))
        self.date = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)

    def letter(self) -> str:
        return self.rng.choice(self.texts).read_text()

    def headers(self, message: EmailMessage, subject: str, index: int | None) -> None:
        first = self.rng.choice(["Dana", "Omar", "Pedro", "Nadia", "Lena", "Ivo"])
        self.date += timedelta(minutes=self.rng.randint(1, 90))
        message["From"] = f"{first} Example <{first.lower()}@example.com>"
        message["To"] = f"Triage <{RECIPIENT}>"
        message["Date"] = format_datetime(self.date)
        message["Subject"] = subject if index is None else f"{subject} [mb {index:02d}]"
        message["Message-ID"] = f"<{self.rng.getrandbits(64):016x}.{index}{self.route}>"

    def flat(self, message: EmailMessage, *, crlf: bool = True) -> bytes:
        """The message's bytes, with boundaries from the seed (the library's are random)."""
        for part in message.walk():
            if part.is_multipart():
                part.set_boundary(f"----=_Part_{self.rng.getrandbits(40):010x}")
        return message.as_bytes(policy=SMTP) if crlf else message.as_bytes()

    def plain(self, index: int) -> bytes:
        message = EmailMessage()
        self.headers(message, "Question about my account", index)
        message.set_content(self.letter(), cte="quoted-printable")
        return self.flat(message)

    def outlook_related(self, index: int) -> bytes:
        """Outlook's shape: alternative of plain and a related HTML with an inline logo."""
        body = self.letter()
        message = EmailMessage()
        self.headers(message, "RE: [EXTERNAL] Open invoice", index)
        message["Thread-Index"] = base64.b64encode(self.rng.randbytes(22)).decode()
        message["X-MS-Has-Attach"] = "yes"
        message["X-Mailer"] = "Microsoft Outlook 16.0"
        message.set_content(body, cte="quoted-printable")
        paragraphs = "".join(f"<p class=MsoNormal>{line}</p>" for line in body.splitlines())
        html = f'<html><body>{paragraphs}<p><img src="cid:logo{index}@01DA"></p></body></html>'
        message.add_alternative(html, subtype="html", cte="quoted-printable")
        html_part = message.get_body(("html",))
        assert isinstance(html_part, EmailMessage)
        html_part.add_related(
            PNG, "image", "png", cid=f"<logo{index}@01DA>", filename="image001.png"
        )
        return self.flat(message)

    def alternative_base64(self, index: int) -> bytes:
        body = self.letter()
        message = EmailMessage()
        self.headers(message, "Follow-up", index)
        message.set_content(body, cte="base64")
        message.add_alternative(f"<html><body><pre>{body}</pre></body></html>", subtype="html")
        return self.flat(message)

    def charset(self, index: int, template: str, charset: str, cte: str) -> bytes:
        number = self.rng.randint(1000, 9999)
        message = EmailMessage()
        self.headers(message, f"Invoice {number}", index)
        message.set_content(template.format(n=number), charset=charset, cte=cte)
        if charset == "windows-1251":  # a text attachment in the same charset (defect 2)
            message.add_attachment(
                template.format(n=number).encode(charset),
                maintype="text",
                subtype="plain",
                filename=f"schet-{number}.txt",
                params={"charset": charset},
            )
        return self.flat(message)

    def pdf(self, index: int, *, octet_stream: bool) -> bytes:
        message = EmailMessage()
        self.headers(message, "Scanned document", index)
        message.set_content("Please see the attached document.\n\nRegards")
        subtype = "octet-stream" if octet_stream else "pdf"
        message.add_attachment(
            make_pdf(self.letter()),
            maintype="application",
            subtype=subtype,
            filename=f"scan-{self.rng.randint(100, 999)}.pdf",
        )
        return self.flat(message)

    def spam(self, index: int) -> bytes:
        message = EmailMessage()
        self.headers(message, "URGENT: your parcel is waiting", index)
        message.set_content("Dear customer, open the attached form to release your parcel.")
        message.add_alternative(
            "<html><body><a href='http://example.invalid/x'>CLICK HERE</a></body></html>",
            subtype="html",
        )
        packed = io.BytesIO()
        with zipfile.ZipFile(packed, "w") as archive:
            archive.writestr(zipfile.ZipInfo("form.exe", (2026, 1, 1, 0, 0, 0)), b"MZ" + bytes(64))
        message.add_attachment(
            packed.getvalue(), maintype="application", subtype="zip", filename="form.zip"
        )
        message.add_attachment(
            b"MZ\x90\x00" + self.rng.randbytes(60),
            maintype="application",
            subtype="x-msdownload",
            filename="invoice.pdf.exe",
        )
        return self.flat(message)

    def delivery_report(self, index: int) -> bytes:
        """A bounce (RFC 3464): multipart/report with the status and the returned headers."""
        self.date += timedelta(minutes=self.rng.randint(1, 90))
        boundary = f"{self.rng.getrandbits(48):012X}.{index}/mail.example.com"
        lines = [
            "From: Mail Delivery System <MAILER-DAEMON@mail.example.com>",
            f"To: Triage <{RECIPIENT}>",
            f"Date: {format_datetime(self.date)}",
            f"Subject: Undelivered Mail Returned to Sender [mb {index:02d}]",
            f"Message-ID: <{self.rng.getrandbits(64):016x}.bounce{self.route}>",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
            "",
            "This is a MIME-encapsulated message.",
            "",
            f"--{boundary}",
            "Content-Description: Notification",
            "Content-Type: text/plain; charset=us-ascii",
            "",
            "This is the mail system at host mail.example.com.",
            "",
            "I'm sorry to have to inform you that your message could not",
            "be delivered to one or more recipients.",
            "",
            "<nobody@example.net>: host mx.example.net said: 550 5.1.1 User unknown",
            "",
            f"--{boundary}",
            "Content-Description: Delivery report",
            "Content-Type: message/delivery-status",
            "",
            "Reporting-MTA: dns; mail.example.com",
            f"Arrival-Date: {format_datetime(self.date)}",
            "",
            "Final-Recipient: rfc822; nobody@example.net",
            "Action: failed",
            "Status: 5.1.1",
            "Diagnostic-Code: smtp; 550 5.1.1 User unknown",
            "",
            f"--{boundary}",
            "Content-Description: Undelivered Message Headers",
            "Content-Type: text/rfc822-headers",
            "",
            f"From: Triage <{RECIPIENT}>",
            "To: nobody@example.net",
            "Subject: Your ticket",
            "",
            f"--{boundary}--",
            "",
        ]
        return "\r\n".join(lines).encode()

    def forwarded(self, index: int) -> bytes:
        inner = EmailMessage()
        self.headers(inner, "Contract renewal", None)
        inner.set_content(self.letter())
        message = EmailMessage()
        self.headers(message, "Fwd: Contract renewal", index)
        message.set_content("Forwarding this one, see below.")
        message.add_attachment(inner)
        return self.flat(message)

    def malformed(self, index: int) -> bytes:
        """Broken headers as real senders make them: no colon, a bad encoded word, a bad date,
        an unbalanced address, a Content-Type with no boundary."""
        body = self.letter().replace("\n", "\r\n")
        return (
            b"Received: from unknown (HELO ylmf-pc) by mx\r\n"
            b'From: "Accounts <accounts@example.com>\r\n'
            b"To: triage@example.org\r\n"
            b"Date: Tuesday, 31 Febtember 2026 25:61\r\n"
            b"Subject: Payment reminder [mb %02d]\r\n"
            b"X-Broken: =?utf-8?B?not-base64!?=\r\n"
            b"Message-ID: <malformed.%d%s>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed\r\n"
            b"this line has no colon at all\r\n"
            b"\r\n" % (index, index, self.route.encode()) + body.encode()
        )

    def bare_lf(self, index: int) -> bytes:
        """A mail as a Unix mailer writes it: LF line endings, longer than one SMTP line."""
        message = EmailMessage()
        self.headers(message, "Logs from the outage", index)
        message.set_content(self.letter() + "\n" + self.letter())
        raw = self.flat(message, crlf=False)
        assert b"\r\n" not in raw and len(raw) > 1001
        return raw

    def no_message_id(self, index: int) -> bytes:
        message = EmailMessage()
        self.headers(message, "Contact form submission", index)
        del message["Message-ID"]
        message.set_content(self.letter())
        return self.flat(message)


def mixed_batch(seed: int, route: str = "") -> list[Mail]:
    """The batch, in the order it is sent: two of each kind of mail and three sent twice.

    ``route`` (a connector's name) goes into every Message-ID and nowhere else, so the
    batches sent through different connectors are the same mails yet not copies of one
    another to an intake that knows mails by Message-ID.
    """
    maker = _Maker(random.Random(seed), route)
    kinds: list[tuple[str, Callable[[int], bytes]]] = [
        ("plain quoted-printable", maker.plain),
        ("outlook related html + inline image", maker.outlook_related),
        ("alternative base64", maker.alternative_base64),
        (
            "windows-1251 + text attachment",
            lambda i: maker.charset(i, CYRILLIC, "windows-1251", "base64"),
        ),
        (
            "iso-8859-2 quoted-printable",
            lambda i: maker.charset(i, POLISH, "iso-8859-2", "quoted-printable"),
        ),
        ("shift_jis base64", lambda i: maker.charset(i, JAPANESE, "shift_jis", "base64")),
        ("pdf attachment", lambda i: maker.pdf(i, octet_stream=False)),
        ("pdf as octet-stream", lambda i: maker.pdf(i, octet_stream=True)),
        ("spam with zip and exe", maker.spam),
        ("delivery status report", maker.delivery_report),
        ("forwarded message", maker.forwarded),
        ("malformed headers", maker.malformed),
        ("bare LF", maker.bare_lf),
        ("no Message-ID", maker.no_message_id),
    ]
    mails = [
        Mail(index, kind, make(index))
        for index, (kind, make) in enumerate((k for k in kinds for _ in range(2)), start=1)
    ]
    order = list(mails)
    order += [mails[i] for i in maker.rng.sample(range(len(mails)), 3)]  # the duplicates
    maker.rng.shuffle(order)
    return order


def tag_of(data: bytes | str | None) -> int | None:
    """The batch number a subject or a raw mail carries, if any."""
    if data is None:
        return None
    found = TAG.search(data.encode() if isinstance(data, str) else data)
    return int(found.group(1)) if found else None


# --- sending --------------------------------------------------------------------------------


@dataclass
class Sent:
    """What one connector was given and what its clients were told."""

    connector: str
    mails: list[Mail] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    """Mails a connector refused for good (an SMTP 5xx), by index: what it answered."""
    retries: int = 0


def smtp_send(port: int, mail: Mail, sent: Sent, *, deadline: float) -> None:
    """Send one mail as a sending server would: retry on 4xx and lost connections until
    ``deadline``; a 5xx is a final answer (recorded in ``sent.refused``)."""
    sent.mails.append(mail)
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.sendmail("sender@example.com", [RECIPIENT], mail.raw)
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                said = exc.smtp_error
                said = said.decode(errors="replace") if isinstance(said, bytes) else said
                sent.refused[mail.index] = f"{exc.smtp_code} {said}"
                return
            error: Exception = exc
        except smtplib.SMTPRecipientsRefused as exc:
            sent.refused[mail.index] = str(exc.recipients)[:200]
            return
        except (OSError, smtplib.SMTPException) as exc:
            error = exc
        else:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"SMTP never accepted {mail.tag}: {error}")
        sent.retries += 1
        time.sleep(0.5)


@dataclass(frozen=True)
class ImapBox:
    """Where the IMAP connector reads from."""

    host: str
    port: int
    ca_file: str
    user: str
    password: str
    mailbox: str

    def client(self) -> IMAPClient:
        """A logged-in client over IMAPS."""
        context = ssl.create_default_context(cafile=self.ca_file)
        client = IMAPClient(self.host, port=self.port, ssl=True, ssl_context=context)
        client.login(self.user, self.password)
        return client

    def account_json(self, name: str) -> str:
        """The connector's ``TRIAGE_INGEST_IMAP_ACCOUNTS`` for this mailbox (IDLE, flagging)."""
        return json.dumps(
            [
                {
                    "name": name,
                    "host": self.host,
                    "port": self.port,
                    "tls": True,
                    "ca_file": self.ca_file,
                    "username": self.user,
                    "password": self.password,
                    "mailboxes": [self.mailbox],
                    "poll_seconds": 2,
                    "idle_seconds": 30,
                }
            ]
        )


def imap_append(box: ImapBox, mail: Mail, sent: Sent) -> None:
    """Deliver one mail into the mailbox (as the mail server does)."""
    with box.client() as client:
        client.append(box.mailbox, mail.raw)
    sent.mails.append(mail)


def drop_file(inbox: Path, mail: Mail, sent: Sent) -> None:
    """Save one mail as ``.eml`` the safe way: written under a dot-name, renamed in."""
    name = f"mail-{len(sent.mails):03d}-{mail.index:02d}.eml"
    partial = inbox / f".{name}"
    partial.write_bytes(mail.raw)
    partial.rename(inbox / name)
    sent.mails.append(mail)


def send_all(
    batch: Sequence[Mail], send: Callable[[Mail], None], handed: list[int], *, pause: float
) -> None:
    """Hand every mail of ``batch`` to ``send``, ``pause`` seconds apart; ``handed`` grows."""
    for mail in batch:
        send(mail)
        handed.append(mail.index)
        time.sleep(pause)


def connectors_done(box: ImapBox, drop: Path) -> bool:
    """Every dropped file moved out of inbox/ and processing/, every mail in the box flagged."""
    if [path for folder in ("inbox", "processing") for path in (drop / folder).iterdir()]:
        return False
    with box.client() as client:
        client.select_folder(box.mailbox, readonly=True)
        unflagged = client.search(["UNKEYWORD", TRIAGED_FLAG.decode()])
    return not unflagged


def wait_drained(
    *,
    database_url: str,
    bootstrap: str,
    prefix: str,
    box: ImapBox,
    drop: Path,
    timeout: float,
) -> None:
    """Wait until the connectors are done and every document on the topic has an outcome."""
    deadline = time.monotonic() + timeout
    engine = create_engine(database_url)
    waiting_for = "the connectors"
    try:
        while time.monotonic() < deadline:
            if connectors_done(box, drop):
                records = asyncio.run(read_topics(bootstrap, [prefix + topics.DOCUMENTS]))
                on_topic = {record["key"] for record in records}
                with engine.connect() as conn:
                    recorded = set(conn.execute(text("SELECT document_id FROM document")).scalars())
                unpublished = recorded - on_topic
                undecided = on_topic - outcomes_reached(database_url, on_topic)
                if not unpublished and not undecided:
                    return
                waiting_for = f"{len(unpublished)} unpublished, {len(undecided)} without outcome"
            time.sleep(1.0)
    finally:
        engine.dispose()
    raise AssertionError(f"the batch did not drain in {timeout:.0f} s: {waiting_for}")


# --- the table ------------------------------------------------------------------------------


@dataclass
class Tally:
    """What became of one connector's mails."""

    connector: str
    mails_sent: int = 0
    distinct_mails: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    documents: int = 0
    routed: int = 0
    review: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    """Documents published with no outcome, and mails accepted with neither documents nor
    a dead letter (``mail [mb NN]``)."""
    duplicated: list[str] = field(default_factory=list)
    """Documents published or decided twice, and mails whose copies made new documents."""
    documents_per_mail: dict[int, int] = field(default_factory=dict)
    parts_made: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    """Per mail, (part, media type) of each of its documents."""


def _rows(database_url: str, sql: str, ids: list[str]) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), {"ids": ids}).all())
    finally:
        engine.dispose()


def documents_by_mail(
    received: Sequence[dict[str, Any]],
) -> dict[tuple[str, int], dict[str, tuple[str, str]]]:
    """Per (connector, mail number), its documents from the documents topic's records:
    document id -> (the part of the mail it is, its media type)."""
    documents: dict[tuple[str, int], dict[str, tuple[str, str]]] = defaultdict(dict)
    strays: list[str] = []
    for record in received:
        value = record["value"] or {}
        if value.get("schema_name") != "DocumentReceived":
            continue
        document = value["document"]
        email = document.get("email") or {}
        number = tag_of(email.get("subject"))
        if number is None:
            strays.append(value["document_id"])
        else:
            documents[(document["source"]["kind"], number)][value["document_id"]] = (
                str(email.get("part")),
                str(document["blob"]["media_type"]),
            )
    assert not strays, f"documents that belong to no mail of the batch: {strays[:5]}"
    return documents


def raw_dead_letters(
    dead: Sequence[dict[str, Any]], read_blob: Callable[[str], bytes]
) -> dict[tuple[str, int], list[str]]:
    """Connectors' dead letters of whole mails per (connector, mail number), each as
    "stage: error class"; the raw mail, read back from the blob store, names the mail."""
    letters: dict[tuple[str, int], list[str]] = defaultdict(list)
    for record in dead:
        value = record["value"] or {}
        if value.get("document_id") or not value.get("raw_blob"):
            continue  # a document's dead letter: its outcome says so
        stage = str(value.get("stage", ""))
        number = tag_of(read_blob(value["raw_blob"]["sha256"]))
        if stage.startswith("ingest.") and number is not None:
            letters[(stage.removeprefix("ingest."), number)].append(
                f"{stage}: {value.get('error_class')}"
            )
    return letters


def columns(
    sent: Sequence[Sent],
    *,
    documents: Mapping[tuple[str, int], Mapping[str, tuple[str, str]]],
    raw_dead: Mapping[tuple[str, int], list[str]],
    fates: Mapping[str, Fate],
    review_reasons: Mapping[str, str],
    dead_reasons: Mapping[str, str],
) -> dict[str, Tally]:
    """Each connector's column: every mail it took must have documents or a dead letter
    (or have been refused to its sender), every document one outcome, and a mail no more
    documents than the parser finds in it (more means a copy became new documents)."""
    tallies = {}
    for batch in sent:
        kind = batch.connector
        column = Tally(kind, mails_sent=len(batch.mails))
        distinct = {mail.index: mail for mail in batch.mails}
        column.distinct_mails = len(distinct)
        column.refused.update(answer.split(" ", 1)[0] for answer in batch.refused.values())
        for number, mail in sorted(distinct.items()):
            mine = documents.get((kind, number), {})
            letters = raw_dead.get((kind, number), [])
            column.documents_per_mail[number] = len(mine)
            column.parts_made[number] = sorted(mine.values())
            column.dead_letters.update(letters)
            if not mine and not letters and number not in batch.refused:
                column.lost.append(f"mail [mb {number:02d}]")
            if len(mine) > mail.parts:
                column.duplicated.append(f"mail [mb {number:02d}]")
            for document_id in sorted(mine):
                fate = fates[document_id]
                column.documents += 1
                if fate.lost:
                    column.lost.append(document_id)
                if fate.duplicated:
                    column.duplicated.append(document_id)
                if fate.outcome == "routed":
                    column.routed += 1
                elif fate.outcome == "review":
                    column.review[review_reasons.get(document_id, "?")] += 1
                elif fate.outcome == "dead_letter":
                    column.dead_letters[dead_reasons.get(document_id, "?")] += 1
        tallies[kind] = column
    return tallies


def tally(
    sent: Sequence[Sent],
    *,
    database_url: str,
    bootstrap: str,
    prefix: str,
    read_blob: Callable[[str], bytes],
) -> dict[str, Tally]:
    """Each connector's table column, judged from the topics read to their end (documents,
    dead letters) and the outcome tables."""
    received = asyncio.run(read_topics(bootstrap, [prefix + topics.DOCUMENTS]))
    dead = asyncio.run(read_topics(bootstrap, [prefix + topics.DEADLETTER]))
    documents = documents_by_mail(received)
    ids = sorted({d for found in documents.values() for d in found})
    judgement = judge(
        database_url,
        ids,
        bootstrap=bootstrap,
        documents_topic=prefix + topics.DOCUMENTS,
        classified_topic=prefix + topics.CLASSIFIED,
    )
    reasons = {
        str(row[0]): str(row[1])
        for row in _rows(
            database_url,
            "SELECT document_id, min(reason) FROM review_item WHERE document_id = ANY(:ids)"
            " GROUP BY document_id",
            ids,
        )
    }
    dead_reasons = {
        str(row[0]): f"{row[1]}: {row[2]}"
        for row in _rows(
            database_url,
            "SELECT document_id, dead_letter_stage, dead_letter_error_class"
            " FROM document_outcome WHERE kind = 'dead_letter' AND document_id = ANY(:ids)",
            ids,
        )
    }
    return columns(
        sent,
        documents=documents,
        raw_dead=raw_dead_letters(dead, read_blob),
        fates=judgement.fates,
        review_reasons=reasons,
        dead_reasons=dead_reasons,
    )


def table_rows(tallies: dict[str, Tally]) -> list[tuple[str, ...]]:
    """The outcome table: one row per measure, one column per connector."""
    columns = [tallies[kind] for kind in CONNECTORS if kind in tallies]

    def counted(getter: Callable[[Tally], Counter[str]]) -> list[tuple[str, ...]]:
        keys = sorted({key for column in columns for key in getter(column)})
        return [(f"  {key}", *(str(getter(c)[key]) for c in columns)) for key in keys]

    return [
        ("connector", *(c.connector for c in columns)),
        ("mails sent (copies included)", *(str(c.mails_sent) for c in columns)),
        ("distinct mails", *(str(c.distinct_mails) for c in columns)),
        ("refused by the connector", *(str(sum(c.refused.values())) for c in columns)),
        *counted(lambda c: c.refused),
        ("documents", *(str(c.documents) for c in columns)),
        ("routed", *(str(c.routed) for c in columns)),
        ("review", *(str(sum(c.review.values())) for c in columns)),
        *counted(lambda c: c.review),
        ("dead letters", *(str(sum(c.dead_letters.values())) for c in columns)),
        *counted(lambda c: c.dead_letters),
        ("lost", *(str(len(c.lost)) for c in columns)),
        ("duplicated", *(str(len(c.duplicated)) for c in columns)),
    ]


def format_table(rows: Sequence[tuple[str, ...]]) -> str:
    """The rows of ``table_rows`` as aligned text."""
    width = max(len(row[0]) for row in rows)
    return "\n".join(
        f"{row[0]:<{width}}  " + "  ".join(f"{cell:>7}" for cell in row[1:]) for row in rows
    )
