"""Ingest's PostgreSQL tables: documents (with their events' outbox rows), idempotency, IMAP
cursors."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from triage_contracts import DocumentReceivedV1, utcnow
from triage_runtime import outbox
from triage_runtime.db.models import (
    Document,
    DocumentStatus,
    IdempotencyRecord,
    ImapCursor,
    ReviewItem,
)


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """A document row as stored: its event identity, and whether this call created it."""

    event_id: uuid.UUID
    trace_id: str
    created: bool


class IngestStore:
    """Reads and writes ingest's tables."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def record_document(self, event: DocumentReceivedV1, *, topic: str) -> StoredDocument:
        """Store the document unless it exists, its event in the outbox for ``topic`` with it;
        return the stored event identity."""
        [stored] = await self.record_documents([event], topic=topic)
        return stored

    async def record_documents(
        self, events: Sequence[DocumentReceivedV1], *, topic: str
    ) -> list[StoredDocument]:
        """``record_document`` for several, in one transaction; one result per event, in order.

        Only a document this call creates puts its event in the outbox: the same bytes sent
        twice, at once or not, are one document and one event.
        """
        if not events:
            return []
        firsts: dict[str, DocumentReceivedV1] = {}
        for event in events:
            firsts.setdefault(event.document_id, event)
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
            for event in firsts.values()
        ]
        ids = list(firsts)
        async with self._sessions.begin() as session:
            created = set(
                await session.scalars(
                    insert(Document)
                    .values(rows)
                    .on_conflict_do_nothing(index_elements=["document_id"])
                    .returning(Document.document_id)
                )
            )
            await outbox.add(
                session, [(topic, event) for doc, event in firsts.items() if doc in created]
            )
            found = {
                row.document_id: (row.event_id, row.trace_id)
                for row in await session.execute(
                    select(Document.document_id, Document.event_id, Document.trace_id).where(
                        Document.document_id.in_(ids)
                    )
                )
            }
        results: list[StoredDocument] = []
        seen: set[str] = set()
        for event in events:
            doc = event.document_id
            results.append(StoredDocument(*found[doc], created=doc in created and doc not in seen))
            seen.add(doc)
        return results

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
            "dead_letter": None
            if derived is None or derived.status != "dead_lettered"
            else {
                "stage": derived.dead_letter_stage,
                "error_class": derived.dead_letter_error_class,
                "reason": derived.dead_letter_reason,
            },
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
