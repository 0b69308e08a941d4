"""Read-side queries for the review queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from triage_runtime.db.models import ReviewItem

OPEN_STATUSES = ("pending", "claimed")


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One open review item as the queue page shows it."""

    id: int
    document_id: str
    reason: str
    priority: int
    due_at: datetime
    received_at: datetime
    filename: str | None
    source: str
    predicted_label: str | None
    confidence: float | None
    model_version: str | None
    status: str


@dataclass(frozen=True, slots=True)
class QueuePage:
    """A page of the open review queue with its counts."""

    rows: list[QueueRow]
    total_open: int
    by_reason: dict[str, int]


class ReviewQueries:
    """Queries against review_item."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def open_queue(self, *, limit: int) -> QueuePage:
        """Return the open items, earliest due first, with counts by reason."""
        async with self._sessions() as session:
            items = (
                await session.execute(
                    select(ReviewItem)
                    .where(ReviewItem.status.in_(OPEN_STATUSES))
                    .order_by(ReviewItem.due_at, ReviewItem.priority, ReviewItem.id)
                    .limit(limit)
                )
            ).scalars()
            rows = [
                QueueRow(
                    id=i.id,
                    document_id=i.document_id,
                    reason=i.reason,
                    priority=i.priority,
                    due_at=i.due_at,
                    received_at=i.received_at,
                    filename=i.filename,
                    source=f"{i.source_kind}:{i.source_name}",
                    predicted_label=i.predicted_label,
                    confidence=i.confidence,
                    model_version=i.model_version,
                    status=i.status,
                )
                for i in items
            ]
            counts = (
                await session.execute(
                    select(ReviewItem.reason, func.count())
                    .where(ReviewItem.status.in_(OPEN_STATUSES))
                    .group_by(ReviewItem.reason)
                )
            ).all()
        by_reason = {str(reason): int(n) for reason, n in counts}
        return QueuePage(rows=rows, total_open=sum(by_reason.values()), by_reason=by_reason)
