"""Opening review items as the router does, with the text, names and times a test needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tests.helpers import RECEIVED_AT, classified
from triage_contracts import EmailInfo, Source, SourceKind
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason, SendToReview


@dataclass(frozen=True)
class Seed:
    """One review item to open: its document's text and what the queue shows of it."""

    text: str
    filename: str | None = "letter.txt"
    subject: str | None = None
    sender: str | None = None
    reason: ReviewReason = ReviewReason.LOW_CONFIDENCE
    label: str = "billing"
    source: SourceKind = SourceKind.UPLOAD
    due_at: datetime = RECEIVED_AT + timedelta(days=1)
    received_at: datetime = RECEIVED_AT
    priority: int = 2


async def open_items(store: OutcomeStore, blobs: LocalBlobStore, seeds: list[Seed]) -> None:
    """Open a review item for each seed, in order (so ids follow the list)."""
    for seed in seeds:
        event = classified(sha256=blobs.put(seed.text.encode()), label=seed.label, confidence=0.55)
        email = (
            EmailInfo(subject=seed.subject, sender=seed.sender, mailbox="INBOX", part="body")
            if seed.subject or seed.sender
            else None
        )
        document = event.document.model_copy(
            update={
                "filename": seed.filename,
                "email": email,
                "received_at": seed.received_at,
                "source": Source(kind=seed.source, name="test"),
            }
        )
        await store.open_review(
            event.model_copy(update={"document": document}),
            SendToReview(seed.reason, seed.priority, seed.due_at),
        )
