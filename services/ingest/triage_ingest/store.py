"""Ingest's PostgreSQL tables: documents (outbox and status), idempotency, IMAP cursors."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from triage_contracts import DocumentReceivedV1, utcnow
from triage_runtime.db.models import (
    Document,
    DocumentStatus,
    IdempotencyRecord,
    ImapCursor,
    ReviewItem,
)


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """A document row as stored: its event identity and whether the event is out."""

    event_id: uuid.UUID
    trace_id: str
    published_at: datetime | None


class IngestStore:
    """Reads and writes ingest's tables."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def record_document(self, event: DocumentReceivedV1) -> StoredDocument:
        """Store the document unless it exists; return the stored event identity."""
        [stored] = await self.record_documents([event])
        return stored

    async def record_documents(self, events: Sequence[DocumentReceivedV1]) -> list[StoredDocument]:
        """``record_document`` for several, in one transaction; one result per event, in order."""
        if not events:
            return []
        rows = [
            {
                "document_id": event.document_id,
                "source_kind": event.document.source.kind.value,
                "source_name": event.document.source.name,
                "filename": event.document.filename,
                "media_type": event.document.blob.media_type,
                "blob_sha256": event.document.blob.sha256,
                "size_bytes": event.document.blob.size_bytes,
                "parent_document_id": event.document.parent_document_id,
                "received_at": event.document.received_at,
                "event_id": event.event_id,
                "trace_id": event.trace_id,
            }
            for event in events
        ]
        ids = [event.document_id for event in events]
        async with self._sessions.begin() as session:
            await session.execute(
                insert(Document).values(rows).on_conflict_do_nothing(index_elements=["document_id"])
            )
            found = {
                row.document_id: StoredDocument(row.event_id, row.trace_id, row.published_at)
                for row in await session.execute(
                    select(
                        Document.document_id,
                        Document.event_id,
                        Document.trace_id,
                        Document.published_at,
                    ).where(Document.document_id.in_(ids))
                )
            }
        return [found[document_id] for document_id in ids]

    async def mark_published(self, document_ids: Sequence[str]) -> None:
        """Note that these documents' DocumentReceived events are on the topic."""
        if not document_ids:
            return
        async with self._sessions.begin() as session:
            await session.execute(
                update(Document)
                .where(Document.document_id.in_(list(document_ids)))
                .values(published_at=utcnow())
            )

    async def status(self, document_id: str) -> dict[str, Any] | None:
        """Return what is known about a document, or None."""
        async with self._sessions() as session:
            doc = await session.get(Document, document_id)
            if doc is None:
                return None
            # The status is derived from the document's outcome (the view document_status).
            derived = await session.get(DocumentStatus, document_id)
            review = (
                await session.execute(
                    select(ReviewItem).where(ReviewItem.document_id == document_id)
                )
            ).scalar_one_or_none()
        return {
            "document_id": doc.document_id,
            "status": derived.status if derived else "received",
            "source": {"kind": doc.source_kind, "name": doc.source_name},
            "filename": doc.filename,
            "media_type": doc.media_type,
            "size_bytes": doc.size_bytes,
            "parent_document_id": doc.parent_document_id,
            "received_at": doc.received_at,
            "queue": derived.queue if derived else None,
            "model_version": derived.model_version if derived else None,
            "review": None
            if review is None
            else {
                "reason": review.reason,
                "status": review.status,
                "decided_label": review.decided_label,
                "due_at": review.due_at,
            },
        }

    async def idempotent_response(
        self, api_key_id: int, key: str
    ) -> tuple[str, dict[str, Any]] | None:
        """Return (request hash, response) stored for an Idempotency-Key, if any."""
        async with self._sessions() as session:
            row = await session.get(IdempotencyRecord, (api_key_id, key))
            return (row.request_sha256, row.response) if row else None

    async def remember_response(
        self, api_key_id: int, key: str, *, request_sha256: str, response: dict[str, Any]
    ) -> None:
        """Keep the response to a request with an Idempotency-Key (first writer wins)."""
        async with self._sessions.begin() as session:
            await session.execute(
                insert(IdempotencyRecord)
                .values(
                    api_key_id=api_key_id,
                    idempotency_key=key,
                    request_sha256=request_sha256,
                    response=response,
                )
                .on_conflict_do_nothing()
            )

    async def imap_cursor(self, account: str, mailbox: str) -> tuple[int, int] | None:
        """Return (uidvalidity, last_uid) for a mailbox, or None before the first pass."""
        async with self._sessions() as session:
            row = await session.get(ImapCursor, (account, mailbox))
            return (row.uidvalidity, row.last_uid) if row else None

    async def save_imap_cursor(
        self, account: str, mailbox: str, *, uidvalidity: int, last_uid: int
    ) -> None:
        """Record that everything up to ``last_uid`` under ``uidvalidity`` is ingested."""
        async with self._sessions.begin() as session:
            await session.execute(
                insert(ImapCursor)
                .values(
                    account=account, mailbox=mailbox, uidvalidity=uidvalidity, last_uid=last_uid
                )
                .on_conflict_do_update(
                    index_elements=["account", "mailbox"],
                    set_={"uidvalidity": uidvalidity, "last_uid": last_uid, "updated_at": utcnow()},
                )
            )
