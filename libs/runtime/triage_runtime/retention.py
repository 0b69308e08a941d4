"""Retention: remove raw documents and review data once their periods are over.

What goes, and when (periods from ``RetentionPolicy``, set by ``TRIAGE_RETENTION_*``):

- raw bytes in the blob store, ``document_days`` after the *last* document that shares them
  was received, once every such document has a final outcome (routed or decided by a
  human). A document still in review keeps its bytes, whatever its age. The ``document`` row
  and its outcome stay; ``document_purge`` says when the bytes went;
- decided and closed review items, ``review_days`` after their decision: the row goes, with
  the email sender, subject, notes and comments it held. The audit log (who decided what,
  when) is append-only and stays;
- expired sign-in sessions, sign-in attempts and upload idempotency records, after
  ``operational_days``; browsers known for the sign-in back-off, once unused for its
  ``device_days`` (90) or ``operational_days``, whichever is longer.

Exports for training (``triage model train --from-reviews``) read decided review items and
their bytes, so take them before the periods end. A run is idempotent; ``dry_run`` counts
without removing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, and_, delete, func, insert, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from triage_runtime.accounts.throttle import LoginThrottle
from triage_runtime.blobstore import BlobStore
from triage_runtime.db.models import (
    Document,
    DocumentPurge,
    DocumentStatus,
    IdempotencyRecord,
    KnownDevice,
    LoginAttempt,
    ReviewItem,
    WebSession,
)

FINAL_STATUSES = ("routed", "decided")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each kind of data is kept, in days."""

    document_days: float = 90.0
    review_days: float = 365.0
    operational_days: float = 30.0


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What a run removed (or, in a dry run, would remove)."""

    blobs: int
    documents_purged: int
    review_items: int
    sessions: int
    login_attempts: int
    idempotency_records: int
    known_devices: int
    dry_run: bool


async def run_retention(
    engine: AsyncEngine,
    blobs: BlobStore,
    policy: RetentionPolicy,
    *,
    now: datetime,
    dry_run: bool = False,
    batch: int = 500,
) -> RetentionReport:
    """Apply ``policy`` as of ``now``; return the counts."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    document_cutoff = now - timedelta(days=policy.document_days)
    review_cutoff = now - timedelta(days=policy.review_days)
    operational_cutoff = now - timedelta(days=policy.operational_days)

    # Blobs whose every document is final and older than the cutoff, not yet purged.
    candidates = (
        select(Document.blob_sha256)
        .join(DocumentStatus, DocumentStatus.document_id == Document.document_id)
        .group_by(Document.blob_sha256)
        .having(
            and_(
                func.max(Document.received_at) < document_cutoff,
                func.bool_and(DocumentStatus.status.in_(FINAL_STATUSES)),
                func.bool_or(DocumentStatus.purged_at.is_(None)),
            )
        )
    )
    unpurged = (
        select(Document.document_id)
        .outerjoin(DocumentPurge, DocumentPurge.document_id == Document.document_id)
        .where(DocumentPurge.document_id.is_(None))
    )
    open_review = select(ReviewItem.blob_sha256).where(
        ReviewItem.status.in_(("pending", "claimed"))
    )
    removed_blobs = purged = 0
    async with sessions() as session:
        shas = [
            row[0]
            for row in (
                await session.execute(candidates.where(Document.blob_sha256.not_in(open_review)))
            ).all()
        ]
    for start in range(0, len(shas), batch):
        chunk = shas[start : start + batch]
        if dry_run:
            async with sessions() as session:
                purged += len(
                    (await session.execute(unpurged.where(Document.blob_sha256.in_(chunk)))).all()
                )
            removed_blobs += len(chunk)
            continue
        for sha in chunk:  # bytes first: a crash leaves rows to purge again, never lost bytes
            removed_blobs += int(blobs.delete(sha))
        async with sessions.begin() as session:
            marked = await session.scalars(
                insert(DocumentPurge)
                .from_select(
                    ["document_id", "purged_at"],
                    unpurged.add_columns(literal(now, DateTime(timezone=True))).where(
                        Document.blob_sha256.in_(chunk)
                    ),
                )
                .returning(DocumentPurge.document_id)
            )
            purged += len(marked.all())

    old_reviews = and_(
        ReviewItem.status.in_(("decided", "closed")),
        or_(
            ReviewItem.decided_at < review_cutoff,
            and_(ReviewItem.decided_at.is_(None), ReviewItem.created_at < review_cutoff),
        ),
    )
    expired_sessions = WebSession.expires_at < operational_cutoff
    old_attempts = LoginAttempt.at < operational_cutoff
    old_idempotency = IdempotencyRecord.created_at < operational_cutoff
    # A browser stays known for the throttle's days after its last sign-in; kept at least as
    # long as other operational data.
    device_days = max(policy.operational_days, LoginThrottle().device_days)
    unused_devices = KnownDevice.last_used_at < now - timedelta(days=device_days)
    counts: list[int] = []
    async with sessions.begin() as session:
        for table, condition in (
            (ReviewItem, old_reviews),
            (WebSession, expired_sessions),
            (LoginAttempt, old_attempts),
            (IdempotencyRecord, old_idempotency),
            (KnownDevice, unused_devices),
        ):
            if dry_run:
                counts.append(
                    int(
                        await session.scalar(
                            select(func.count()).select_from(table).where(condition)
                        )
                        or 0
                    )
                )
            else:
                result = await session.execute(delete(table).where(condition))
                counts.append(_rowcount(result))
    return RetentionReport(
        blobs=removed_blobs,
        documents_purged=purged,
        review_items=counts[0],
        sessions=counts[1],
        login_attempts=counts[2],
        idempotency_records=counts[3],
        known_devices=counts[4],
        dry_run=dry_run,
    )


def _rowcount(result: Any) -> int:
    """Rows an UPDATE or DELETE touched."""
    return int(result.rowcount or 0)
