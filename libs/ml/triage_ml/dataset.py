"""Read labelled training data: one folder per label, holding documents of any supported type."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from pathlib import Path

from triage_contracts import ExtractionStatus
from triage_ml.model import Example
from triage_text.extract import extract_text


def media_type_of(path: Path) -> str:
    """Guess a file's media type from its name; unknown types are treated as plain text."""
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "text/plain"


def iter_folder_dataset(root: Path) -> Iterator[tuple[Path, str]]:
    """Yield (file, label) for every file under ``root/<label>/``, in a stable order."""
    if not root.is_dir():
        raise FileNotFoundError(f"no dataset directory at {root}")
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(p for p in label_dir.rglob("*") if p.is_file()):
            if not path.name.startswith("."):
                yield path, label_dir.name


def load_example(path: Path, label: str) -> Example | None:
    """Extract a file's text with the serving feature code; None when it has no usable text."""
    extracted = extract_text(path.read_bytes(), media_type_of(path))
    if extracted.status is not ExtractionStatus.OK:
        return None
    return Example(text=extracted.text, label=label)


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


def text_example(text: str, label: str) -> Example | None:
    """Normalise raw text with the serving feature code; None when nothing is left."""
    extracted = extract_text(text.encode("utf-8"), "text/plain")
    if extracted.status is not ExtractionStatus.OK:
        return None
    return Example(text=extracted.text, label=label)
