"""Training equals serving for emails: the trainer's reader makes of an ``.eml`` file the same
documents, with the same text, as ingest stores and the classifier extracts."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest

from scripts.pdfgen import make_pdf
from tests import mail_samples
from tests.helpers import small_examples
from tests.unit.inmemory import (
    MemoryBlobHolds,
    MemoryBlobs,
    MemoryEmailIdentities,
    consumer_record,
)
from triage_contracts import (
    DocumentReceivedV1,
    ExtractionStatus,
    Producer,
    Source,
    SourceKind,
)
from triage_ingest.intake import Intake
from triage_ingest.store import StoredDocument
from triage_ml.dataset import (
    MAX_FILE_BYTES,
    LabelledData,
    extract_document,
    file_documents,
    load_examples,
)
from triage_ml.scoring import DocumentReader
from triage_runtime.kafka import encode_event
from triage_text.pool import ExtractionLimits, ExtractionPool


def _mail(subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Ana Ruiz <ana@example.org>"
    msg["To"] = "support@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    return msg


def plain_mail() -> bytes:
    msg = _mail("Invoice 4471 charged twice")
    msg.set_content(
        "Hello,\r\n\r\nour card was charged twice for invoice 4471 — please refund\u00a0one "
        "payment.\r\n\r\nThanks,\r\nAna\r\n"
    )
    return msg.as_bytes()


def html_mail() -> bytes:
    msg = _mail("Login broken")
    msg.set_content(
        "<html><head><style>p{color:red}</style></head><body><p>Since the update the "
        "<b>SSO login</b> fails with error 502.</p><script>track()</script>"
        "<p>Caf\u00e9 team</p></body></html>",
        subtype="html",
        charset="iso-8859-1",
    )
    return msg.as_bytes()


def multipart_mail() -> bytes:
    msg = _mail("Contract renewal, see attachments")
    msg.set_content("Please review the attached contract and the notes before Friday.")
    msg.add_alternative("<p>Please review the attached <i>contract</i> before Friday.</p>", "html")
    msg.add_attachment(
        "Notes: clause 4.2 changes the termination notice to 90 days.\n".encode("cp1252"),
        maintype="text",
        subtype="plain",
        filename="notes.txt",
    )
    msg.add_attachment(
        make_pdf("Master services agreement\nThe renewal term is twelve months."),
        maintype="application",
        subtype="pdf",
        filename="contract.pdf",
    )
    msg.add_attachment(b"PK\x03\x04zip", maintype="application", subtype="zip", filename="x.zip")
    return msg.as_bytes()


def forwarded_mail() -> bytes:
    inner = _mail("Fwd original: refund request")
    inner.set_content("I would like a refund for order 99.")
    outer = _mail("Fwd: refund request")
    outer.set_content("")  # an empty body: the forward is what matters
    outer.add_attachment(inner)
    return outer.as_bytes()


MAILS = {
    "plain.eml": plain_mail,
    "html.eml": html_mail,
    "multipart.eml": multipart_mail,
    "forwarded.eml": forwarded_mail,
}


@pytest.fixture(scope="module")
def mailbox(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("mailbox")
    paths = []
    for name, build in MAILS.items():
        paths.append(root / name)
        paths[-1].write_bytes(build())
    return paths


class RecordingStore(MemoryBlobHolds, MemoryEmailIdentities):
    """Ingest's store as far as ``accept_email`` uses it: every document is new."""

    def __init__(self) -> None:
        MemoryBlobHolds.__init__(self)
        MemoryEmailIdentities.__init__(self)
        self.events: list[DocumentReceivedV1] = []

    async def record_documents(
        self,
        events: Sequence[DocumentReceivedV1],
        *,
        topic: str,
        raws: Mapping[str, str] | None = None,
    ) -> list[StoredDocument]:
        self.events.extend(events)
        return [
            StoredDocument(
                e.event_id,
                e.trace_id,
                e.document.filename,
                e.document.blob.media_type,
                created=True,
            )
            for e in events
        ]


class NoOutbox:
    async def publish(self, event_ids: Collection[uuid.UUID]) -> int:
        return 0


def served_documents(raw: bytes) -> list[tuple[str | None, str, ExtractionStatus, str]]:
    """What the pipeline makes of one mail: ingest's ``accept_email`` stores its documents,
    then the classifier's ``DocumentReader`` fetches and extracts each one."""
    blobs, store = MemoryBlobs(), RecordingStore()
    intake = Intake(
        blobs=cast(Any, blobs),
        broker=cast(Any, None),  # used only to dead-letter, which these mails never are
        store=cast(Any, store),
        outbox=cast(Any, NoOutbox()),
        producer=Producer(service="ingest", version="test"),
        documents_topic="documents",
        deadletter_topic="deadletter",
    )

    async def run() -> list[tuple[str | None, str, ExtractionStatus, str]]:
        await intake.accept_email(raw, source=Source(kind=SourceKind.IMAP, name="support"))
        records = [
            consumer_record("documents", encode_event(e), offset=i)
            for i, e in enumerate(store.events)
        ]
        limits = ExtractionLimits(timeout_seconds=30, max_bytes=MAX_FILE_BYTES)
        async with ExtractionPool(workers=1, limits=limits) as pool:
            reader = DocumentReader(blobs=cast(Any, blobs), pool=pool, max_bytes=MAX_FILE_BYTES)
            read = await reader.read(records)
        assert not read.dead and not read.retry
        return [
            (
                item.received.document.email.part if item.received.document.email else None,
                item.received.document.blob.media_type,
                item.text.status,
                item.text.text,
            )
            for item in read.extracted
        ]

    return asyncio.run(run())


def trained_documents(path: Path) -> list[tuple[str | None, str, ExtractionStatus, str]]:
    """What the trainer's reader makes of the same file."""
    out = []
    for document in file_documents(path):
        extracted = extract_document(document)
        out.append((document.part, document.media_type, extracted.status, extracted.text))
    return out


@pytest.mark.parametrize("name", list(MAILS))
def test_the_trainer_sees_what_the_classifier_sees_after_ingest(
    mailbox: list[Path], name: str
) -> None:
    [path] = [p for p in mailbox if p.name == name]
    served = served_documents(path.read_bytes())
    assert trained_documents(path) == served
    # and the examples are exactly the served texts that have text
    texts = [text for *_, status, text in served if status is ExtractionStatus.OK]
    assert [e.text for e in load_examples(path, "billing")] == texts
    assert texts, "every mail here has at least one document with text"


@pytest.mark.parametrize(
    "build",
    [
        mail_samples.outlook_inline_image,
        mail_samples.smime_signed,
        mail_samples.pgp_signed,
        mail_samples.delivery_report,
        mail_samples.read_receipt,
    ],
)
def test_the_trainer_leaves_out_the_parts_ingest_leaves_out(
    tmp_path: Path, build: Callable[[], bytes]
) -> None:
    path = tmp_path / "mail.eml"
    path.write_bytes(build())

    trained = trained_documents(path)

    assert trained == served_documents(path.read_bytes())
    assert {media_type for _, media_type, _, _ in trained} <= {"text/plain", "application/pdf"}


def test_an_email_becomes_its_body_and_each_attachment(mailbox: list[Path]) -> None:
    by_name = {p.name: trained_documents(p) for p in mailbox}
    [(part, media_type, status, text)] = by_name["plain.eml"]
    assert (part, media_type, status) == ("body", "text/plain", ExtractionStatus.OK)
    assert text.startswith("Hello,\n\nour card was charged twice") and "\r" not in text
    [(_, _, _, html_text)] = by_name["html.eml"]
    assert "SSO login fails with error 502" in html_text and "Café team" in html_text
    assert "track()" not in html_text and "color" not in html_text
    multipart = by_name["multipart.eml"]
    assert [(m, s) for _, m, s, _ in multipart] == [
        ("text/plain", ExtractionStatus.OK),  # the plain alternative is the body
        ("text/plain", ExtractionStatus.OK),
        ("application/pdf", ExtractionStatus.OK),
        ("application/zip", ExtractionStatus.UNSUPPORTED),
    ]
    assert "renewal term is twelve months" in multipart[2][3]
    forwarded = by_name["forwarded.eml"]
    assert [(p, s) for p, _, s, _ in forwarded] == [
        ("body", ExtractionStatus.EMPTY),
        ("2/body", ExtractionStatus.OK),
    ]
    assert forwarded[1][3] == "I would like a refund for order 99."


def test_skipped_documents_are_counted_by_label_and_reason(
    mailbox: list[Path], tmp_path: Path
) -> None:
    data = LabelledData()
    for path in mailbox:
        data.add_file(path, "mail")
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(make_pdf(""))
    data.add_file(scan, "legal")
    data.add_text("   \x00  ", "legal")
    assert len(data.examples) == 6
    assert data.skipped == Counter(
        {("mail", "unsupported type"): 1, ("mail", "no text"): 1, ("legal", "no text"): 2}
    )
    assert data.skipped_by_reason == Counter({"no text": 3, "unsupported type": 1})
    assert data.email_documents == Counter({1: 2, 2: 1, 4: 1})
    assert data.describe_emails() == (
        "4 emails became 8 documents: 2 became 1, 1 became 2, 1 became 4"
    )
    assert data.lost_labels() == {"legal": Counter({"no text": 2})}


def test_an_unreadable_or_oversized_file_is_one_skipped_document(tmp_path: Path) -> None:
    big = tmp_path / "big.eml"
    big.write_bytes(b"Subject: x\r\n\r\n" + b"a" * 100)
    [document] = file_documents(big, max_bytes=50)
    assert document.refused is ExtractionStatus.TOO_LARGE
    assert extract_document(document).status is ExtractionStatus.TOO_LARGE
    missing = tmp_path / "gone.eml"
    missing.symlink_to(tmp_path / "nowhere")
    [document] = file_documents(missing)
    assert extract_document(document).status is ExtractionStatus.CORRUPT
    data = LabelledData()
    data.add_file(missing, "billing")
    assert data.skipped == Counter({("billing", "unreadable"): 1})
    assert not data.email_documents


# --- the commands: train, eval and batch score read emails the same way --------------------


@pytest.fixture
def labelled_folder(tmp_path: Path) -> Path:
    """A tiny separable training set as .txt files, plus emails in two queues."""
    root = tmp_path / "train"
    for i, example in enumerate(small_examples(per_label=12)):
        folder = root / example.label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:03d}.txt").write_text(example.text)
    (root / "billing" / "plain.eml").write_bytes(plain_mail())
    (root / "legal" / "multipart.eml").write_bytes(multipart_mail())
    (root / "billing" / "forwarded.eml").write_bytes(forwarded_mail())
    return root


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from triage_cli.main import app

    return CliRunner().invoke(app, list(args))


def test_train_reads_emails_and_names_what_it_skipped(
    labelled_folder: Path, tmp_path: Path
) -> None:
    files = sum(1 for p in labelled_folder.rglob("*") if p.is_file())
    result = _cli("model", "train", "--data", str(labelled_folder), "--out", str(tmp_path / "m"))
    assert result.exit_code == 0, result.output
    assert "3 emails became 7 documents: 1 became 1, 1 became 2, 1 became 4" in result.output
    # every .txt, the plain mail's body, the multipart's body, notes and PDF, the forward's
    with_text = files - 3 + 1 + 3 + 1
    assert f"{with_text} documents with text; 2 skipped: no text 1, unsupported type 1" in (
        result.output
    )
    [artifact] = (tmp_path / "m").iterdir()
    metadata = json.loads((artifact / "metadata.json").read_text())
    assert metadata["splits"]["train"] + metadata["splits"]["holdout"] == with_text


def test_a_queue_left_without_text_stops_training(labelled_folder: Path, tmp_path: Path) -> None:
    (labelled_folder / "spam").mkdir()
    only_empty = _mail("scan")
    only_empty.set_content("")
    only_empty.add_attachment(b"PK\x03\x04", maintype="application", subtype="zip")
    (labelled_folder / "spam" / "scan.eml").write_bytes(only_empty.as_bytes())
    result = _cli("model", "train", "--data", str(labelled_folder), "--out", str(tmp_path / "m"))
    assert result.exit_code == 2, result.output
    assert (
        "training stopped: no document with text in queue spam "
        "(2 skipped: no text 1, unsupported type 1)\n"
    ) in result.output
    assert not (tmp_path / "m").exists()


def test_eval_reads_emails_and_says_what_it_could_not_read(
    labelled_folder: Path, tmp_path: Path
) -> None:
    from triage_ml import model as model_lib

    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    artifact = model_lib.save(pipeline, metadata, out_dir=tmp_path / "models")
    golden = tmp_path / "golden"
    (golden / "billing").mkdir(parents=True)
    (golden / "billing" / "a.eml").write_bytes(plain_mail())
    (golden / "billing" / "b.eml").write_bytes(forwarded_mail())
    (golden / "legal").mkdir()
    (golden / "legal" / "c.eml").write_bytes(multipart_mail())
    (golden / "legal" / "scan.pdf").write_bytes(make_pdf(""))
    result = _cli("model", "eval", "--golden", str(golden), "--model", str(artifact))
    assert result.exit_code == 0, result.output
    assert "3 emails became 7 documents" in result.output
    assert "5 documents with text; 3 skipped: no text 2, unsupported type 1" in result.output
    assert "on 5 golden documents" in result.output


def test_batch_score_scores_each_document_of_an_email(tmp_path: Path) -> None:
    from triage_ml import model as model_lib

    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    artifact = model_lib.save(pipeline, metadata, out_dir=tmp_path / "models")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "multipart.eml").write_bytes(multipart_mail())
    (folder / "empty.eml").write_bytes(forwarded_mail())
    (folder / "a.txt").write_text("the invoice payment is overdue, refund the charge")
    out = tmp_path / "scores.jsonl"
    result = _cli(
        "batch", "score", "--input", str(folder), "--output", str(out), "--model", str(artifact)
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(Path(r["path"]).name, r["part"], r["extraction"]) for r in rows] == [
        ("a.txt", None, "ok"),
        ("empty.eml", "body", "empty"),
        ("empty.eml", "2/body", "ok"),
        ("multipart.eml", "body", "ok"),
        ("multipart.eml", "2", "ok"),
        ("multipart.eml", "3", "ok"),
        ("multipart.eml", "4", "unsupported"),
    ]
    assert all((r["label"] is None) == (r["extraction"] != "ok") for r in rows)
    assert "3 files became 7 documents; 2 skipped: no text 1, unsupported type 1" in (result.output)


def test_batch_score_survives_a_chunk_without_any_text(tmp_path: Path) -> None:
    from triage_ml import model as model_lib

    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    artifact = model_lib.save(pipeline, metadata, out_dir=tmp_path / "models")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "scan.pdf").write_bytes(make_pdf(""))
    out = tmp_path / "scores.csv"
    result = _cli(
        "batch", "score", "--input", str(folder), "--output", str(out), "--model", str(artifact)
    )
    assert result.exit_code == 0, result.output
    assert "1 files became 1 documents; 1 skipped: no text 1" in result.output
