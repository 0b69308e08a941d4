"""Training data for ``triage model train``: folders, CSV/JSONL files, and review decisions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from triage_contracts import ExtractionStatus
from triage_ml.dataset import (
    LabelledData,
    iter_folder_dataset,
    iter_folder_items,
    iter_table_dataset,
    iter_table_records,
    modified_at,
)
from triage_ml.model import Example
from triage_text.extract import extract_text


def count_items(path: Path) -> int:
    """How many items a source holds (for the progress bar)."""
    if path.is_dir():
        return sum(1 for _ in iter_folder_dataset(path))
    return sum(1 for _ in iter_table_dataset(path))


def read_source(path: Path, into: LabelledData, *, advance: Callable[[], None]) -> None:
    """Read one source into ``into`` with the serving parsing and feature code: a folder's
    files (an email as its body and attachments), or a CSV/JSONL's rows."""
    if path.is_dir():
        for file, label, slice_name in iter_folder_items(path):
            into.add_file(file, label, slice_name=slice_name)
            advance()
    else:
        time = modified_at(path)
        records = enumerate(iter_table_records(path), start=1)
        for number, (text, label, slice_name) in records:
            into.add_text(text, label, origin=f"{path}:{number}", time=time, slice_name=slice_name)
            advance()


def review_decisions(database_url: str, blob_store_opener: Callable[[], object]) -> list[Example]:
    """Examples from human review decisions: the document's text and the label a person chose.

    Only decisions for one of the model's labels: a document sent to another queue, or marked
    spam or not a document, teaches the model nothing it could predict."""
    from sqlalchemy import create_engine, select

    from triage_runtime.db.models import ReviewItem
    from triage_runtime.outcomes.review import DecisionKind

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(ReviewItem.blob_sha256, ReviewItem.media_type, ReviewItem.decided_label)
                .where(
                    ReviewItem.status == "decided",
                    ReviewItem.decision_kind == DecisionKind.LABEL.value,
                    ReviewItem.decided_label.is_not(None),
                )
                .order_by(ReviewItem.id)
            ).all()
    finally:
        engine.dispose()
    blobs = blob_store_opener()
    examples = []
    for sha256, media_type, label in rows:
        data = blobs.get(sha256)  # type: ignore[attr-defined]
        extracted = extract_text(data, media_type)
        if extracted.status is ExtractionStatus.OK:
            examples.append(Example(text=extracted.text, label=str(label)))
    return examples
