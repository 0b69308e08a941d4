"""Ingest's PostgreSQL tables: documents (with their events' outbox rows), idempotency, IMAP
cursors and attempts."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from triage_contracts import DeadLetterV1, DocumentReceivedV1, Source, SourceKind, utcnow
from triage_runtime import blobrefs, outbox
from triage_runtime.db.models import (
    DeadLetterBlob,
    Document,
    DocumentRaw,
    DocumentStatus,
    EmailIdentity,
    EmailRawSeen,
    IdempotencyRecord,
    ImapAttempt,
    ImapCursor,
    PendingBlob,
    ReviewItem,
)


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """An Idempotency-Key as one request found it: held by this request (``owner``), or by
    another, whose request and answer (None while it has none) are given."""

    owner: uuid.UUID | None
    request_sha256: str
    response: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """A document row as stored: its event identity, what it was stored as (the first
    arrival's name and type, when the same document came again), and whether this call
    created it."""

    event_id: uuid.UUID
    trace_id: str
    filename: str | None
    media_type: str
    created: bool


def message_key(scope: str, message_id: str) -> str:
    """How a Message-ID is keyed within its scope (``domain.email_scope``): their SHA-256, as
    a Message-ID may be longer than an index entry may be."""
    return hashlib.sha256(f"{scope}\x1f{message_id}".encode("utf-8", "surrogateescape")).hexdigest()


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
        self,
        events: Sequence[DocumentReceivedV1],
        *,
        topic: str,
        raws: Mapping[str, str] | None = None,
    ) -> list[StoredDocument]:
        """``record_document`` for several, in one transaction; one result per event, in order.

        Only a document this call creates puts its event in the outbox: the same bytes sent
        twice, at once or not, are one document and one event. ``raws`` maps a document id
        to the raw email it came out of, which then belongs to it (``document_raw``).
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
                "message_id": event.document.email.message_id if event.document.email else None,
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
            owned_raws = [
                {"document_id": doc, "raw_sha256": raw}
                for doc, raw in (raws or {}).items()
                if doc in firsts
            ]
            if owned_raws:
                await session.execute(
                    insert(DocumentRaw).values(owned_raws).on_conflict_do_nothing()
                )
            found = {
                row.document_id: (row.event_id, row.trace_id, row.filename, row.media_type)
                for row in await session.execute(
                    select(
                        Document.document_id,
                        Document.event_id,
                        Document.trace_id,
                        Document.filename,
                        Document.media_type,
                    ).where(Document.document_id.in_(ids))
                )
            }
        results: list[StoredDocument] = []
        seen: set[str] = set()
        for event in events:
            doc = event.document_id
            results.append(StoredDocument(*found[doc], created=doc in created and doc not in seen))
            seen.add(doc)
        return results

    async def hold_blobs(self, sha256s: Collection[str]) -> None:
        """Say that these bytes are being stored (``pending_blob``), before they are, so the
        orphan sweep keeps them; waits while a sweep or retention is deleting one of them."""
        if not sha256s:
            return
        async with self._sessions.begin() as session:
            await blobrefs.lock_shared(session, sha256s)
            statement = insert(PendingBlob).values([{"sha256": s} for s in sorted(set(sha256s))])
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["sha256"], set_={"held_at": func.now()}
                )
            )

    async def record_dead_letter(self, topic: str, letter: DeadLetterV1) -> None:
        """Keep an ingest dead letter's raw input (``dead_letter_blob``, for retention) and put
        the letter in the outbox for ``topic``, in one transaction: while Kafka is away the
        letter waits there, as a document's event does."""
        async with self._sessions.begin() as session:
            if letter.raw_blob is not None:
                statement = insert(DeadLetterBlob).values(
                    sha256=letter.raw_blob.sha256, dead_lettered_at=func.now()
                )
                await session.execute(
                    statement.on_conflict_do_update(
                        index_elements=["sha256"], set_={"dead_lettered_at": func.now()}
                    )
                )
            await outbox.add(session, [(topic, letter)])

    async def claim_email_identity(
        self, scope: str, message_id: str, parts_sha256: str, *, source: Source, raw_sha256: str
    ) -> tuple[Source, str]:
        """The first arrival in ``scope`` of this email (its Message-ID and parts): the source
        and raw hash its document ids are derived from. This arrival's own, if it is first.

        Committed before any document is recorded, so of copies arriving at once each gets
        the same answer (the primary key lets one insert; the others wait for it, then read).
        """
        key = message_key(scope, message_id)
        first = {
            "message_key": key,
            "parts_sha256": parts_sha256,
            "source_kind": source.kind.value,
            "source_name": source.name,
            "raw_sha256": raw_sha256,
        }
        async with self._sessions.begin() as session:
            await session.execute(insert(EmailIdentity).values(first).on_conflict_do_nothing())
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(
                        EmailIdentity.source_kind,
                        EmailIdentity.source_name,
                        EmailIdentity.raw_sha256,
                    ).where(
                        EmailIdentity.message_key == key,
                        EmailIdentity.parts_sha256 == parts_sha256,
                    )
                )
            ).one()
        return Source(kind=SourceKind(row.source_kind), name=row.source_name), row.raw_sha256

    async def record_email_seen(self, scope: str, message_id: str, raw_size: int) -> None:
        """Say that an email of this Message-ID and size has its documents recorded."""
        async with self._sessions.begin() as session:
            await session.execute(
                insert(EmailRawSeen)
                .values(message_key=message_key(scope, message_id), raw_size=raw_size)
                .on_conflict_do_nothing()
            )

    async def emails_seen(
        self, scope: str, emails: Collection[tuple[str, int]]
    ) -> set[tuple[str, int]]:
        """Which of these (Message-ID, size) pairs ``record_email_seen`` was told of."""
        if not emails:
            return set()
        keys = {(message_key(scope, mid), size): (mid, size) for mid, size in emails}
        async with self._sessions() as session:
            rows = await session.execute(
                select(EmailRawSeen.message_key, EmailRawSeen.raw_size).where(
                    EmailRawSeen.message_key.in_({key for key, _ in keys})
                )
            )
            return {keys[pair] for pair in map(tuple, rows) if pair in keys}

    async def documents_of_message(self, message_id: str) -> list[str]:
        """The ids of the documents of the email(s) with this Message-ID, oldest first."""
        async with self._sessions() as session:
            return list(
                await session.scalars(
                    select(Document.document_id)
                    .where(Document.message_id == message_id)
                    .order_by(Document.received_at, Document.document_id)
                )
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
            "message_id": doc.message_id,
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

    async def claim_idempotency_key(
        self, api_key_id: int, key: str, *, request_sha256: str, hold_seconds: float
    ) -> IdempotencyClaim:
        """Reserve an Idempotency-Key for a request, or say who holds it and what it answered.

        The key is this request's when nobody had it, or when its holder's reservation ran
        out without an answer (that request crashed); the primary key makes either happen
        for one request only. Each step commits at once, so others see the reservation.
        """
        token = uuid.uuid4()
        hold = text("now() + make_interval(secs => :hold)").bindparams(hold=hold_seconds)
        pk = (IdempotencyRecord.api_key_id == api_key_id) & (
            IdempotencyRecord.idempotency_key == key
        )
        while True:
            async with self._sessions.begin() as session:
                reserved = await session.scalar(
                    insert(IdempotencyRecord)
                    .values(
                        api_key_id=api_key_id,
                        idempotency_key=key,
                        request_sha256=request_sha256,
                        owner_token=token,
                        reserved_until=hold,
                    )
                    .on_conflict_do_nothing()
                    .returning(IdempotencyRecord.owner_token)
                )
                if reserved is None:
                    reserved = await session.scalar(
                        update(IdempotencyRecord)
                        .where(
                            pk,
                            IdempotencyRecord.response.is_(None),
                            IdempotencyRecord.reserved_until < func.now(),
                        )
                        .values(
                            request_sha256=request_sha256, owner_token=token, reserved_until=hold
                        )
                        .returning(IdempotencyRecord.owner_token)
                    )
            if reserved is not None:
                return IdempotencyClaim(owner=token, request_sha256=request_sha256, response=None)
            async with self._sessions() as session:
                row = (
                    await session.execute(
                        select(IdempotencyRecord.request_sha256, IdempotencyRecord.response).where(
                            pk
                        )
                    )
                ).one_or_none()
            if row is not None:  # else its holder gave it up just now: try again
                return IdempotencyClaim(owner=None, request_sha256=row[0], response=row[1])

    async def answer_idempotency_key(
        self, api_key_id: int, key: str, *, owner: uuid.UUID, response: dict[str, Any]
    ) -> bool:
        """Keep the answer of the request holding the key; False if it no longer held it."""
        async with self._sessions.begin() as session:
            answered = await session.scalar(
                update(IdempotencyRecord)
                .where(
                    IdempotencyRecord.api_key_id == api_key_id,
                    IdempotencyRecord.idempotency_key == key,
                    IdempotencyRecord.owner_token == owner,
                )
                .values(response=response, owner_token=None, reserved_until=None)
                .returning(IdempotencyRecord.api_key_id)
            )
        return answered is not None

    async def renew_idempotency_key(
        self, api_key_id: int, key: str, *, owner: uuid.UUID, hold_seconds: float
    ) -> bool:
        """Extend the reservation of the request still holding the key; False if it no
        longer holds it (its reservation ran out and another request took the key)."""
        hold = text("now() + make_interval(secs => :hold)").bindparams(hold=hold_seconds)
        async with self._sessions.begin() as session:
            renewed = await session.scalar(
                update(IdempotencyRecord)
                .where(
                    IdempotencyRecord.api_key_id == api_key_id,
                    IdempotencyRecord.idempotency_key == key,
                    IdempotencyRecord.owner_token == owner,
                    IdempotencyRecord.response.is_(None),
                )
                .values(reserved_until=hold)
                .returning(IdempotencyRecord.api_key_id)
            )
        return renewed is not None

    async def release_idempotency_key(self, api_key_id: int, key: str, *, owner: uuid.UUID) -> None:
        """Give up a key whose request failed without an answer, so a retry need not wait."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.api_key_id == api_key_id,
                    IdempotencyRecord.idempotency_key == key,
                    IdempotencyRecord.owner_token == owner,
                    IdempotencyRecord.response.is_(None),
                )
            )

    async def imap_cursor(self, account: str, mailbox: str) -> tuple[int, int] | None:
        """Return (uidvalidity, last_uid) for a mailbox, or None before the first pass."""
        async with self._sessions() as session:
            row = await session.get(ImapCursor, (account, mailbox))
            return (row.uidvalidity, row.last_uid) if row else None

    async def save_imap_cursor(
        self, account: str, mailbox: str, *, uidvalidity: int, last_uid: int
    ) -> None:
        """Record that everything up to ``last_uid`` under ``uidvalidity`` is ingested, and
        forget the attempts of what is now behind the cursor."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(ImapAttempt).where(
                    ImapAttempt.account == account,
                    ImapAttempt.mailbox == mailbox,
                    (ImapAttempt.uidvalidity != uidvalidity) | (ImapAttempt.uid <= last_uid),
                )
            )
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

    async def begin_imap_attempt(
        self, account: str, mailbox: str, *, uidvalidity: int, uid: int
    ) -> tuple[int, str | None]:
        """Count one more start at taking a message; return (attempts before this one, the
        last error they left). Committed at once, so a start that crashes the process counts.
        """
        key = {"account": account, "mailbox": mailbox, "uidvalidity": uidvalidity, "uid": uid}
        async with self._sessions.begin() as session:
            row = (
                await session.execute(
                    insert(ImapAttempt)
                    .values(**key, attempts=1)
                    .on_conflict_do_update(
                        index_elements=list(key),
                        set_={"attempts": ImapAttempt.attempts + 1, "updated_at": func.now()},
                    )
                    .returning(ImapAttempt.attempts, ImapAttempt.last_error)
                )
            ).one()
        return row.attempts - 1, row.last_error

    async def fail_imap_attempt(
        self, account: str, mailbox: str, *, uidvalidity: int, uid: int, error: str, counts: bool
    ) -> None:
        """Keep why taking a message failed; ``counts`` False takes the attempt back (the
        failure was a dependency's, not the message's)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(ImapAttempt)
                .where(
                    ImapAttempt.account == account,
                    ImapAttempt.mailbox == mailbox,
                    ImapAttempt.uidvalidity == uidvalidity,
                    ImapAttempt.uid == uid,
                )
                .values(
                    last_error=error[:500],
                    attempts=ImapAttempt.attempts - (0 if counts else 1),
                    updated_at=func.now(),
                )
            )
