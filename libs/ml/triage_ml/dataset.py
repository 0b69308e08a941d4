"""Read labelled training data: one folder per label, holding documents of any supported type."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from pathlib import Path

from triage_contracts import ExtractionStatus
from triage_ml.features import extract_text
from triage_ml.model import Example


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
