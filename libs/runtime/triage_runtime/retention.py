"""Retention: remove raw documents and review data once their periods are over.

What goes, and when (periods from ``RetentionPolicy``, set by ``TRIAGE_RETENTION_*``):

- raw bytes in the blob store, ``document_days`` after the *last* document that owns them
  was received (stored as them, or come out of them as a raw email: ``document_raw``), once
  every such document has a final outcome (routed or decided by a human). A document still in
  review keeps its bytes, whatever its age. The ``document`` row and its outcome stay;
  ``document_purge`` says when the bytes went. The raw input of an ingest dead letter goes
  ``document_days`` after its last letter;
- blobs nothing owns (``triage_runtime.blobrefs``), once older than ``orphan_grace``: what an
  upload that crashed before recording its document left (``sweep_orphans``);
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

import asyncio
import itertools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    DateTime,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from triage_runtime import blobrefs
from triage_runtime.accounts.throttle import LoginThrottle
from triage_runtime.blobstore import BlobStore
from triage_runtime.db.models import (
    BlobSweepFloor,
    DeadLetterBlob,
    Document,
    DocumentPurge,
    DocumentRaw,
    DocumentStatus,
    IdempotencyRecord,
    KnownDevice,
    LoginAttempt,
    PendingBlob,
    ReviewItem,
    WebSession,
)

FINAL_STATUSES = ("routed", "decided")
DEFAULT_ORPHAN_GRACE = timedelta(hours=24)
"""How old an unowned blob must be before the sweep removes it: longer than any upload."""

log = logging.getLogger(__name__)


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
    orphans: int
    dry_run: bool


async def run_retention(
    engine: AsyncEngine,
    blobs: BlobStore,
    policy: RetentionPolicy,
    *,
    now: datetime,
    dry_run: bool = False,
    batch: int = 500,
    orphan_grace: timedelta = DEFAULT_ORPHAN_GRACE,
) -> RetentionReport:
    """Apply ``policy`` as of ``now``, then sweep orphaned blobs older than ``orphan_grace``
    (``sweep_orphans``); return the counts."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    document_cutoff = now - timedelta(days=policy.document_days)
    review_cutoff = now - timedelta(days=policy.review_days)
    operational_cutoff = now - timedelta(days=policy.operational_days)

    # What owns each blob: the documents stored as those bytes, the documents of a raw
    # email, the dead letters of a raw input (final from the start). A blob goes once every
    # owner is final and older than the cutoff, and one of them has not been purged yet.
    owners = union_all(
        select(
            Document.blob_sha256.label("sha256"),
            DocumentStatus.received_at.label("at"),
            DocumentStatus.status.in_(FINAL_STATUSES).label("final"),
            DocumentStatus.purged_at.is_(None).label("unpurged"),
        ).join(DocumentStatus, DocumentStatus.document_id == Document.document_id),
        select(
            DocumentRaw.raw_sha256,
            DocumentStatus.received_at,
            DocumentStatus.status.in_(FINAL_STATUSES),
            true(),  # the row goes with the raw email
        ).join(DocumentStatus, DocumentStatus.document_id == DocumentRaw.document_id),
        select(DeadLetterBlob.sha256, DeadLetterBlob.dead_lettered_at, true(), true()),
    ).subquery()
    candidates = (
        select(owners.c.sha256)
        .group_by(owners.c.sha256)
        .having(
            and_(
                func.max(owners.c.at) < document_cutoff,
                func.bool_and(owners.c.final),
                func.bool_or(owners.c.unpurged),
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
                await session.execute(candidates.where(owners.c.sha256.not_in(open_review)))
            ).all()
        ]
    pending_since = now - orphan_grace
    for start in range(0, len(shas), batch):
        chunk = shas[start : start + batch]
        if dry_run:
            async with sessions() as session:
                held = set(await session.scalars(blobrefs.held(chunk, pending_since=pending_since)))
                chunk = [sha for sha in chunk if sha not in held]
                purged += len(
                    (await session.execute(unpurged.where(Document.blob_sha256.in_(chunk)))).all()
                )
            removed_blobs += len(chunk)
            continue
        gone: list[str] = []
        for sha in chunk:  # bytes first: a crash leaves rows to purge again, never lost bytes
            async with sessions.begin() as session:
                # A write of the same bytes in progress (a new document) keeps them.
                await blobrefs.lock_exclusive(session, sha)
                if await session.scalar(blobrefs.held([sha], pending_since=pending_since)):
                    continue
                removed_blobs += int(await asyncio.to_thread(blobs.delete, sha))
            gone.append(sha)
        chunk = gone
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
            await session.execute(delete(DocumentRaw).where(DocumentRaw.raw_sha256.in_(chunk)))
            await session.execute(delete(DeadLetterBlob).where(DeadLetterBlob.sha256.in_(chunk)))

    orphans = await sweep_orphans(
        engine, blobs, now=now, grace=orphan_grace, dry_run=dry_run, batch=batch
    )

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
        orphans=orphans,
        dry_run=dry_run,
    )


async def sweep_orphans(
    engine: AsyncEngine,
    blobs: BlobStore,
    *,
    now: datetime,
    grace: timedelta = DEFAULT_ORPHAN_GRACE,
    dry_run: bool = False,
    batch: int = 500,
) -> int:
    """Remove blobs written before ``now - grace`` that nothing owns (``blobrefs.owned``):
    the bytes of uploads that crashed before their document was recorded. Blobs written
    before ownership was recorded (``blob_sweep_floor``) stay. Return how many went (or, in a
    dry run, would go)."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    cutoff = now - grace
    async with sessions() as session:
        floor = await session.scalar(select(func.min(BlobSweepFloor.since)))
    old = (
        blob.sha256
        for blob in blobs.list_blobs()
        if blob.modified_at < cutoff and (floor is None or blob.modified_at >= floor)
    )
    swept = 0
    while chunk := await asyncio.to_thread(lambda: list(itertools.islice(old, batch))):
        async with sessions() as session:
            found = set((await session.scalars(blobrefs.owned(chunk, pending_since=cutoff))).all())
        for sha in (sha for sha in chunk if sha not in found):
            if dry_run:
                swept += 1
                continue
            async with sessions.begin() as session:
                # Under the blob's lock, no write can hold it between this look and the
                # delete; a write that held it before is seen here.
                await blobrefs.lock_exclusive(session, sha)
                if await session.scalar(blobrefs.owned([sha], pending_since=cutoff)):
                    continue
                swept += int(await asyncio.to_thread(blobs.delete, sha))
    if not dry_run:
        async with sessions.begin() as session:
            await session.execute(delete(PendingBlob).where(PendingBlob.held_at < cutoff))
    log.info(
        "orphaned blobs swept",
        extra={"orphans": swept, "dry_run": dry_run, "grace_seconds": grace.total_seconds()},
    )
    return swept


def _rowcount(result: Any) -> int:
    """Rows an UPDATE or DELETE touched."""
    return int(result.rowcount or 0)
