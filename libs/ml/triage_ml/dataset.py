"""Read labelled training data and folders to score: one folder per label, holding documents
of any type ingest accepts.

A file becomes the documents ingest would make of it (``file_documents``): a plain file is one
document; an email (``.eml``) is parsed by the ingest parser (``triage_text.email``) into its
body and one document per attachment, each with the bytes and media type ingest stores. Their
text comes from the classifier's extraction (``triage_text.extract``). Training, evaluation
and batch scoring all read files here, so a model is trained on what it will see served.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from triage_contracts import ExtractionStatus, SourceKind, derive_document_id
from triage_ml.model import Example
from triage_text.email.parse import EMAIL_MEDIA_TYPE, parse_email
from triage_text.email.result import DOCUMENT_KINDS
from triage_text.extract import ExtractedText, extract_text

MAX_FILE_BYTES = 25 * 1024 * 1024
"""Largest file read, as ingest's upload limit and the classifier's document limit."""

SKIP_REASONS: dict[ExtractionStatus, str] = {
    ExtractionStatus.EMPTY: "no text",
    ExtractionStatus.ENCRYPTED: "encrypted",
    ExtractionStatus.CORRUPT: "unreadable",
    ExtractionStatus.UNSUPPORTED: "unsupported type",
    ExtractionStatus.TOO_LARGE: "too large",
    ExtractionStatus.TIMEOUT: "timed out",
}
"""Why a document gave no text, as train, eval and batch score print it."""

FOLDER_SOURCE = "drop-folder"
"""The source name a file read here is given, as ingest's drop folder is named by default
(TRIAGE_INGEST_DROP_SOURCE_NAME): the same file dropped there gets the same document id."""


def folder_source(name: str = FOLDER_SOURCE) -> str:
    """The ``source`` column of a file read here: ``folder:<name>``, as ``kind:name``."""
    return f"{SourceKind.FOLDER.value}:{name}"


def modified_at(path: Path) -> datetime | None:
    """When a file was last changed (UTC), or None when it cannot be read."""
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    except OSError:
        return None


def skip_reason(status: ExtractionStatus) -> str:
    """The reason printed for a document whose extraction ended in ``status``."""
    return SKIP_REASONS.get(status, status.value)


def describe_skipped(skipped: Counter[str]) -> str:
    """``3 skipped: no text 2, encrypted 1``: documents without text, by reason."""
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(skipped.items()))
    total = sum(skipped.values())
    return f"{total} skipped: {reasons}" if total else "0 skipped"


def media_type_of(path: Path) -> str:
    """Guess a file's media type from its name; unknown types are treated as plain text."""
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "text/plain"


@dataclass(frozen=True, slots=True)
class FileDocument:
    """One document a file becomes, with the bytes and media type ingest would store."""

    path: Path
    part: str | None
    """The email part (``body``, ``2``, ``3/body``); None for a file that is one document."""
    media_type: str
    data: bytes
    refused: ExtractionStatus | None = None
    """Set when the file itself could not be read or is too large: nothing to extract."""
    identity: tuple[str, ...] = ()
    """What identifies the document within its source, as ingest derives ids: the content
    hash, or an email's raw hash and part; an unreadable file's path."""

    def document_id(self, source_name: str = FOLDER_SOURCE) -> str:
        """The id ingest's drop folder named ``source_name`` would give this document."""
        return derive_document_id(SourceKind.FOLDER.value, source_name, *self.identity)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_documents(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> list[FileDocument]:
    """The documents ingest makes of a file: itself, or an email's body and attachments."""
    media_type = media_type_of(path)
    try:
        if path.stat().st_size > max_bytes:
            too_large = ExtractionStatus.TOO_LARGE
            identity = (_file_sha256(path),)
            return [FileDocument(path, None, media_type, b"", too_large, identity)]
        data = path.read_bytes()
    except OSError:
        unreadable = ("unreadable", str(path))
        return [FileDocument(path, None, media_type, b"", ExtractionStatus.CORRUPT, unreadable)]
    if media_type != EMAIL_MEDIA_TYPE:
        return [FileDocument(path, None, media_type, data, identity=(_sha256(data),))]
    parsed = parse_email(data)  # as ingest's accept_email with no mail rule: the parts of
    raw = _sha256(data)  # the kinds that are documents by default, not signatures and the like
    return [
        FileDocument(path, part.part, part.media_type, part.data, identity=(raw, part.part))
        for part in parsed.parts
        if part.kind in DOCUMENT_KINDS
    ]


def document_count(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> int:
    """How many documents ``file_documents`` makes of a file; only an email is read."""
    if media_type_of(path) != EMAIL_MEDIA_TYPE:
        return 1
    return len(file_documents(path, max_bytes=max_bytes))


def extract_document(document: FileDocument) -> ExtractedText:
    """The text the classifier would extract from the stored document."""
    if document.refused is not None:
        return ExtractedText(document.refused)
    return extract_text(document.data, document.media_type)


def iter_folder_dataset(root: Path) -> Iterator[tuple[Path, str]]:
    """Yield (file, label) for every file under ``root/<label>/``, in a stable order."""
    for path, label, _ in iter_folder_items(root):
        yield path, label


def iter_folder_items(root: Path) -> Iterator[tuple[Path, str, str | None]]:
    """Yield (file, label, slice) for every file under ``root/<label>/``, in a stable order;
    the slice is the sub-folder below the label folder (``root/<label>/<slice>/...``), if any."""
    if not root.is_dir():
        raise FileNotFoundError(f"no dataset directory at {root}")
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(p for p in label_dir.rglob("*") if p.is_file()):
            if not path.name.startswith("."):
                below = path.relative_to(label_dir).parts
                yield path, label_dir.name, below[0] if len(below) > 1 else None


def load_examples(path: Path, label: str) -> list[Example]:
    """The examples a file gives (an email one per part with text), labelled ``label``."""
    data = LabelledData()
    data.add_file(path, label)
    return data.examples


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an example came from, so its row can be joined with other outputs."""

    path: str | None
    """The file; a CSV or JSONL record's is ``FILE:N`` (its Nth record); a review decision's
    is None."""
    part: str | None = None
    """The email part; None for a file that is one document."""
    document_id: str | None = None
    """The id ingest's drop folder would give the document (``FileDocument.document_id``)."""
    time: datetime | None = None
    """When the file was last changed (a table record: the table's)."""
    slice: str | None = None
    """The golden set's slice: the sub-folder below the label folder, or the ``source``
    column of a CSV/JSONL record."""


@dataclass(slots=True)
class LabelledData:
    """Examples read from labelled sources, and what was skipped, by label and reason."""

    examples: list[Example] = field(default_factory=list)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Documents without text, by (label, reason)."""
    email_documents: Counter[int] = field(default_factory=Counter)
    """How many emails became how many documents (documents per email → emails)."""
    origins: list[Origin] = field(default_factory=list)
    """Where each example came from, in step with ``examples``."""

    def add_file(self, path: Path, label: str, *, slice_name: str | None = None) -> None:
        """Add the documents a file becomes, each labelled ``label``."""
        documents = file_documents(path)
        if any(document.part is not None for document in documents):
            self.email_documents[len(documents)] += 1
        time = modified_at(path)
        self._add(
            (
                (
                    extract_document(document),
                    Origin(
                        str(path),
                        document.part,
                        document.document_id(),
                        time,
                        slice_name,
                    ),
                )
                for document in documents
            ),
            label,
        )

    def add_text(
        self,
        text: str,
        label: str,
        *,
        origin: str | None = None,
        time: datetime | None = None,
        slice_name: str | None = None,
    ) -> None:
        """Add a text (a CSV or JSONL row, ``origin`` its ``FILE:N``), normalised as serving
        does; its document id is that of a file holding exactly the text."""
        data = text.encode("utf-8")
        document_id = derive_document_id(SourceKind.FOLDER.value, FOLDER_SOURCE, _sha256(data))
        where = Origin(origin, None, document_id, time, slice_name)
        self._add([(extract_text(data, "text/plain"), where)], label)

    def extend(self, examples: Iterable[Example]) -> None:
        """Add examples that are already extracted (human review decisions)."""
        for example in examples:
            self.examples.append(example)
            self.origins.append(Origin(None))

    def _add(self, extracted: Iterable[tuple[ExtractedText, Origin]], label: str) -> None:
        for result, origin in extracted:
            if result.status is ExtractionStatus.OK:
                self.examples.append(Example(text=result.text, label=label))
                self.origins.append(origin)
            else:
                self.skipped[(label, skip_reason(result.status))] += 1

    @property
    def skipped_by_reason(self) -> Counter[str]:
        """Documents without text, by reason."""
        out: Counter[str] = Counter()
        for (_, reason), count in self.skipped.items():
            out[reason] += count
        return out

    def lost_labels(self) -> dict[str, Counter[str]]:
        """Labels that had documents but none with text, with their skipped reasons."""
        kept = {example.label for example in self.examples}
        lost: dict[str, Counter[str]] = {}
        for (label, reason), count in sorted(self.skipped.items()):
            if label not in kept:
                lost.setdefault(label, Counter())[reason] += count
        return lost

    def describe_emails(self) -> str:
        """``5 emails became 9 documents: 2 became 1, 2 became 2, 1 became 3``."""
        emails = sum(self.email_documents.values())
        documents = sum(n * count for n, count in self.email_documents.items())
        each = ", ".join(f"{count} became {n}" for n, count in sorted(self.email_documents.items()))
        return f"{emails} emails became {documents} documents: {each}"


class DatasetError(ValueError):
    """A training data source that cannot be read, with the reason."""


def iter_table_dataset(path: Path) -> Iterator[tuple[str, str]]:
    """Yield (text, label) from a CSV (header ``text,label``) or JSONL (``{"text", "label"}``)."""
    for text, label, _ in iter_table_records(path):
        yield text, label


def iter_table_records(path: Path) -> Iterator[tuple[str, str, str | None]]:
    """Yield (text, label, slice) from a CSV or JSONL; the slice is its optional ``source``
    column (empty: none)."""
    import csv
    import json

    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
                raise DatasetError(f"{path}: the CSV header must have 'text' and 'label' columns")
            for row_number, row in enumerate(reader, start=2):
                text, label = row.get("text"), row.get("label")
                if not text or not label:
                    raise DatasetError(f"{path}:{row_number}: empty text or label")
                yield text, label.strip(), (row.get("source") or "").strip() or None
    elif suffix in {".jsonl", ".ndjson"}:
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{line_number}: not JSON: {exc.msg}") from exc
                text, label = record.get("text"), record.get("label")
                if not isinstance(text, str) or not isinstance(label, str) or not text or not label:
                    raise DatasetError(f"{path}:{line_number}: needs non-empty 'text' and 'label'")
                source = record.get("source")
                slice_name = source.strip() or None if isinstance(source, str) else None
                yield text, label.strip(), slice_name
    else:
        raise DatasetError(f"{path}: expected a directory, a .csv or a .jsonl file")
