"""What owns a blob, and the lock that keeps a blob being stored from being deleted.

A blob is owned by a document (its bytes, ``document.blob_sha256``, or the raw email it came
out of, ``document_raw``), a review item, an ingest dead letter (``dead_letter_blob``), or a
write in progress (``pending_blob``, young). Ingest holds a blob (``pending_blob``) before it
stores the bytes, under a shared advisory lock on the hash; whatever deletes a blob (the
orphan sweep, retention) takes that lock exclusively and looks again before it deletes, so a
delete and a write of the same bytes never interleave: either the delete sees the hold and
keeps the blob, or the write comes after the delete and stores the bytes again.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Select, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from triage_runtime.db.models import DeadLetterBlob, Document, DocumentRaw, PendingBlob, ReviewItem


def lock_key(sha256: str) -> int:
    """The advisory lock key of a blob: its hash's first 64 bits, as a signed bigint."""
    value = int(sha256[:16], 16)
    return value - (1 << 64) if value >= 1 << 63 else value


async def lock_shared(session: AsyncSession, sha256s: Collection[str]) -> None:
    """Take the blobs' locks for writing, in one order (held until the transaction ends)."""
    for sha in sorted(set(sha256s)):
        await session.execute(select(func.pg_advisory_xact_lock_shared(lock_key(sha))))


async def lock_exclusive(session: AsyncSession, sha256: str) -> None:
    """Take a blob's lock for deleting it (held until the transaction ends)."""
    await session.execute(select(func.pg_advisory_xact_lock(lock_key(sha256))))


def owned(sha256s: Collection[str], *, pending_since: datetime) -> Select[str]:
    """The hashes among ``sha256s`` that something owns; a hold counts from ``pending_since``."""
    shas = list(sha256s)
    return select(
        union(
            select(Document.blob_sha256).where(Document.blob_sha256.in_(shas)),
            select(DocumentRaw.raw_sha256).where(DocumentRaw.raw_sha256.in_(shas)),
            select(ReviewItem.blob_sha256).where(ReviewItem.blob_sha256.in_(shas)),
            select(DeadLetterBlob.sha256).where(DeadLetterBlob.sha256.in_(shas)),
            select(PendingBlob.sha256).where(
                PendingBlob.sha256.in_(shas), PendingBlob.held_at >= pending_since
            ),
        ).subquery()
    )


def held(sha256s: Collection[str], *, pending_since: datetime) -> Select[str]:
    """The hashes among ``sha256s`` that a write holds since ``pending_since``."""
    return select(PendingBlob.sha256).where(
        PendingBlob.sha256.in_(list(sha256s)), PendingBlob.held_at >= pending_since
    )
