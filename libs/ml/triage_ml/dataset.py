"""Read labelled training data and folders to score: one folder per label, holding documents
of any type ingest accepts.

A file becomes the documents ingest would make of it (``file_documents``): a plain file is one
document; an email (``.eml``) is parsed by the ingest parser (``triage_text.email``) into its
body and one document per attachment, each with the bytes and media type ingest stores. Their
text comes from the classifier's extraction (``triage_text.extract``). Training, evaluation
and batch scoring all read files here, so a model is trained on what it will see served.
"""

from __future__ import annotations

import mimetypes
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from triage_contracts import ExtractionStatus
from triage_ml.model import Example
from triage_text.email.parse import EMAIL_MEDIA_TYPE, parse_email
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


def file_documents(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> list[FileDocument]:
    """The documents ingest makes of a file: itself, or an email's body and attachments."""
    media_type = media_type_of(path)
    try:
        if path.stat().st_size > max_bytes:
            return [FileDocument(path, None, media_type, b"", ExtractionStatus.TOO_LARGE)]
        data = path.read_bytes()
    except OSError:
        return [FileDocument(path, None, media_type, b"", ExtractionStatus.CORRUPT)]
    if media_type != EMAIL_MEDIA_TYPE:
        return [FileDocument(path, None, media_type, data)]
    parsed = parse_email(data)  # as ingest's accept_email: one document per part it returns
    return [FileDocument(path, part.part, part.media_type, part.data) for part in parsed.parts]


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
    if not root.is_dir():
        raise FileNotFoundError(f"no dataset directory at {root}")
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(p for p in label_dir.rglob("*") if p.is_file()):
            if not path.name.startswith("."):
                yield path, label_dir.name


def load_examples(path: Path, label: str) -> list[Example]:
    """The examples a file gives (an email one per part with text), labelled ``label``."""
    data = LabelledData()
    data.add_file(path, label)
    return data.examples


@dataclass(slots=True)
class LabelledData:
    """Examples read from labelled sources, and what was skipped, by label and reason."""

    examples: list[Example] = field(default_factory=list)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Documents without text, by (label, reason)."""
    email_documents: Counter[int] = field(default_factory=Counter)
    """How many emails became how many documents (documents per email → emails)."""
    origins: list[tuple[str | None, str | None]] = field(default_factory=list)
    """Where each example came from, in step with ``examples``: (path, email part). A CSV
    or JSONL record's path is ``FILE:N`` (its Nth record); a review decision's is None."""

    def add_file(self, path: Path, label: str) -> None:
        """Add the documents a file becomes, each labelled ``label``."""
        documents = file_documents(path)
        if any(document.part is not None for document in documents):
            self.email_documents[len(documents)] += 1
        self._add(
            ((extract_document(document), (str(path), document.part)) for document in documents),
            label,
        )

    def add_text(self, text: str, label: str, *, origin: str | None = None) -> None:
        """Add a text (a CSV or JSONL row, ``origin`` its ``FILE:N``), normalised as serving
        does."""
        self._add([(extract_text(text.encode("utf-8"), "text/plain"), (origin, None))], label)

    def extend(self, examples: Iterable[Example]) -> None:
        """Add examples that are already extracted (human review decisions)."""
        for example in examples:
            self.examples.append(example)
            self.origins.append((None, None))

    def _add(
        self,
        extracted: Iterable[tuple[ExtractedText, tuple[str | None, str | None]]],
        label: str,
    ) -> None:
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
                yield text, label.strip()
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
                yield text, label.strip()
    else:
        raise DatasetError(f"{path}: expected a directory, a .csv or a .jsonl file")
