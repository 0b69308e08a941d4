"""Opening review items as the router does, with the text, names and times a test needs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import RECEIVED_AT, classified, routed_item
from triage_contracts import DecidedBy, DocumentClassifiedV1, EmailInfo, Source, SourceKind
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.models import Document
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason, RouteTo, SendToReview


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
    part: str = "body"
    """The email part it is, when it has a subject or sender."""
    document_id: str | None = None
    """Its document id, recorded as a document (``record_document``) with ``parent`` when
    given; else derived from the text and not recorded."""
    parent: str | None = None


def seeded_event(blobs: LocalBlobStore, seed: Seed) -> DocumentClassifiedV1:
    """The classified event of ``seed``'s document, its text stored in ``blobs``."""
    event = classified(sha256=blobs.put(seed.text.encode()), label=seed.label, confidence=0.55)
    email = (
        EmailInfo(subject=seed.subject, sender=seed.sender, mailbox="INBOX", part=seed.part)
        if seed.subject or seed.sender
        else None
    )
    document = event.document.model_copy(
        update={
            "filename": seed.filename,
            "email": email,
            "received_at": seed.received_at,
            "source": Source(kind=seed.source, name="test"),
            "parent_document_id": seed.parent,
        }
    )
    return event.model_copy(
        update={"document": document, "document_id": seed.document_id or event.document_id}
    )


async def record_document(engine: AsyncEngine, event: DocumentClassifiedV1) -> None:
    """Record ``event``'s document in the document table, as ingest does."""
    document = event.document
    async with engine.begin() as conn:
        await conn.execute(
            insert(Document).values(
                document_id=event.document_id,
                source_kind=document.source.kind.value,
                source_name=document.source.name,
                filename=document.filename,
                media_type=document.blob.media_type,
                blob_sha256=document.blob.sha256,
                size_bytes=document.blob.size_bytes,
                parent_document_id=document.parent_document_id,
                received_at=document.received_at,
                event_id=uuid.uuid4(),
                trace_id=event.trace_id,
            )
        )


async def open_items(
    store: OutcomeStore,
    blobs: LocalBlobStore,
    seeds: list[Seed],
    engine: AsyncEngine | None = None,
) -> None:
    """Open a review item for each seed, in order (so ids follow the list); seeds with a
    ``document_id`` are recorded as documents on ``engine`` first."""
    for seed in seeds:
        event = seeded_event(blobs, seed)
        if seed.document_id is not None:
            assert engine is not None, "recording a document needs the engine"
            await record_document(engine, event)
        await store.open_review(event, SendToReview(seed.reason, seed.priority, seed.due_at))


async def route_seeded(
    store: OutcomeStore, blobs: LocalBlobStore, engine: AsyncEngine, seed: Seed, queue: str
) -> None:
    """Record ``seed``'s document (it needs a ``document_id``) and route it to ``queue`` by
    the model, as the router does for a confident score: no review item."""
    assert seed.document_id is not None, "a routed seed is recorded as a document"
    event = seeded_event(blobs, seed)
    await record_document(engine, event)
    decision = RouteTo(queue, DecidedBy.MODEL, 0.97)
    await store.record_route(event, decision, routed=routed_item(event, decision))
