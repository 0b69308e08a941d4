"""Read-side queries for the review UI: the queue with filters, an item, audit, dashboard.

Filters come from query strings, so any text reaches here: values are bound parameters
(never SQL text), and values PostgreSQL cannot take (text with a NUL character, an item id
past bigint) match nothing instead of raising a DataError (a 500).

Reviewers work blind: a quality sample is shown, counted, filtered and sorted as the
low-confidence item it looks like (``SHOWN_REASON``), and no page or API field carries the
model's confidence, which would tell a confident routing from an uncertain one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, false, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from triage_contracts import utcnow
from triage_runtime.db.models import AuditLog, ReviewItem
from triage_runtime.routing import ReviewReason

OPEN_STATUSES = ("pending", "claimed")
MAX_BIGINT = 2**63 - 1

_BLIND = {ReviewReason.QUALITY_SAMPLE.value: ReviewReason.LOW_CONFIDENCE.value}
"""Stored reasons a reviewer sees as another: a quality sample is a low-confidence item."""
SHOWN_REASON = case(
    *((ReviewItem.reason == stored, shown) for stored, shown in _BLIND.items()),
    else_=ReviewItem.reason,
)
"""``shown_reason`` in SQL, for filtering and counting as reviewers see it."""


def shown_reason(reason: str) -> str:
    """The reason a reviewer is shown for an item's stored ``reason``."""
    return _BLIND.get(reason, reason)


def shown_counts(by_reason: dict[str, int]) -> dict[str, int]:
    """Counts by stored reason as a reviewer sees them (by ``shown_reason``)."""
    shown: dict[str, int] = {}
    for reason, n in by_reason.items():
        shown[shown_reason(reason)] = shown.get(shown_reason(reason), 0) + n
    return shown


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """What the queue page is narrowed to; every field is optional."""

    reason: str | None = None
    label: str | None = None
    source: str | None = None
    min_age_hours: float | None = None


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One open review item as the queue page (and its JSON) shows it, to a reviewer."""

    id: int
    document_id: str
    reason: str
    priority: int
    due_at: datetime
    received_at: datetime
    filename: str | None
    source: str
    predicted_label: str | None
    model_version: str | None
    status: str
    claimed_by: str | None
    claimed_until: datetime | None


@dataclass(frozen=True, slots=True)
class QueuePage:
    """A page of the open review queue with its counts."""

    rows: list[QueueRow]
    total_open: int
    by_reason: dict[str, int]
    matching: int = 0


@dataclass(frozen=True, slots=True)
class Dashboard:
    """The numbers ops staff watch."""

    open_items: int
    oldest_age_hours: float | None
    overdue: int
    decisions_per_hour: list[tuple[datetime, int]] = field(default_factory=list)
    override_by_model: list[tuple[str, int, int]] = field(default_factory=list)
    by_reason: dict[str, int] = field(default_factory=dict)
    """Open items by stored reason (the gauges'); pages show ``shown_counts`` of it."""


def _row(i: ReviewItem) -> QueueRow:
    return QueueRow(
        id=i.id,
        document_id=i.document_id,
        reason=shown_reason(i.reason),
        priority=i.priority,
        due_at=i.due_at,
        received_at=i.received_at,
        filename=i.filename,
        source=f"{i.source_kind}:{i.source_name}",
        predicted_label=i.predicted_label,
        model_version=i.model_version,
        status=i.status,
        claimed_by=i.claimed_by,
        claimed_until=i.claimed_until,
    )


def _equals(
    column: InstrumentedAttribute[Any] | ColumnElement[Any], value: str
) -> ColumnElement[bool]:
    """``column = value``, or false for text PostgreSQL cannot hold (it refuses NUL)."""
    return false() if "\x00" in value else column == value


def _filtered(query: Select[Any], flt: QueueFilter) -> Select[Any]:
    query = query.where(ReviewItem.status.in_(OPEN_STATUSES))
    if flt.reason:
        query = query.where(_equals(SHOWN_REASON, flt.reason))
    if flt.label:
        query = query.where(_equals(ReviewItem.predicted_label, flt.label))
    if flt.source:
        query = query.where(_equals(ReviewItem.source_kind, flt.source))
    if flt.min_age_hours:
        query = query.where(ReviewItem.received_at <= utcnow() - timedelta(hours=flt.min_age_hours))
    return query


class ReviewQueries:
    """Queries against review_item and audit_log."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def open_queue(
        self, *, limit: int, flt: QueueFilter | None = None, offset: int = 0
    ) -> QueuePage:
        """Return open items matching ``flt``, earliest due first, with counts."""
        flt = flt or QueueFilter()
        async with self._sessions() as session:
            items = (
                await session.execute(
                    _filtered(select(ReviewItem), flt)
                    .order_by(ReviewItem.due_at, ReviewItem.priority, ReviewItem.id)
                    .offset(offset)
                    .limit(limit)
                )
            ).scalars()
            rows = [_row(i) for i in items]
            matching = (
                await session.execute(_filtered(select(func.count()).select_from(ReviewItem), flt))
            ).scalar_one()
            counts = (
                await session.execute(
                    select(ReviewItem.reason, func.count())
                    .where(ReviewItem.status.in_(OPEN_STATUSES))
                    .group_by(ReviewItem.reason)
                )
            ).all()
        by_reason = shown_counts({str(reason): int(n) for reason, n in counts})
        return QueuePage(
            rows=rows, total_open=sum(by_reason.values()), by_reason=by_reason, matching=matching
        )

    async def item(self, item_id: int) -> ReviewItem | None:
        """One review item with everything the item page shows."""
        if not 0 < item_id <= MAX_BIGINT:
            return None
        async with self._sessions() as session:
            return await session.get(ReviewItem, item_id)

    async def neighbour(self, item_id: int, *, after: bool) -> int | None:
        """The next (or previous) open item in due order, for keyboard navigation."""
        if not 0 < item_id <= MAX_BIGINT:
            return None
        async with self._sessions() as session:
            current = await session.get(ReviewItem, item_id)
            if current is None:
                return None
            key = (current.due_at, current.id)
            query = select(ReviewItem.id).where(ReviewItem.status.in_(OPEN_STATUSES))
            if after:
                query = query.where(
                    (ReviewItem.due_at > key[0])
                    | ((ReviewItem.due_at == key[0]) & (ReviewItem.id > key[1]))
                ).order_by(ReviewItem.due_at, ReviewItem.id)
            else:
                query = query.where(
                    (ReviewItem.due_at < key[0])
                    | ((ReviewItem.due_at == key[0]) & (ReviewItem.id < key[1]))
                ).order_by(ReviewItem.due_at.desc(), ReviewItem.id.desc())
            return (await session.execute(query.limit(1))).scalar_one_or_none()

    async def first_open(self) -> int | None:
        """The open item due soonest."""
        async with self._sessions() as session:
            return (
                await session.execute(
                    select(ReviewItem.id)
                    .where(ReviewItem.status == "pending")
                    .order_by(ReviewItem.due_at, ReviewItem.id)
                    .limit(1)
                )
            ).scalar_one_or_none()

    async def audit(self, *, limit: int = 200) -> tuple[list[AuditLog], list[tuple[str, int]]]:
        """The latest audit rows and the number of decisions per reviewer."""
        async with self._sessions() as session:
            rows = list(
                (
                    await session.execute(
                        select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
                    )
                ).scalars()
            )
            counts = (
                await session.execute(
                    select(AuditLog.actor, func.count())
                    .where(AuditLog.action.in_(("decide", "bulk_decide")))
                    .group_by(AuditLog.actor)
                    .order_by(func.count().desc())
                )
            ).all()
        return rows, [(str(a), int(n)) for a, n in counts]

    async def dashboard(self) -> Dashboard:
        """Queue depth and age, decisions per hour (24 h), override rate per model version."""
        now = utcnow()
        async with self._sessions() as session:
            open_items, oldest, overdue = (
                await session.execute(
                    select(
                        func.count(),
                        func.min(ReviewItem.received_at),
                        func.count().filter(ReviewItem.due_at < now),
                    ).where(ReviewItem.status.in_(OPEN_STATUSES))
                )
            ).one()
            hour = func.date_trunc("hour", ReviewItem.decided_at)
            per_hour = (
                await session.execute(
                    select(hour, func.count())
                    .where(ReviewItem.decided_at >= now - timedelta(hours=24))
                    .group_by(hour)
                    .order_by(hour)
                )
            ).all()
            overrides = (
                await session.execute(
                    select(
                        ReviewItem.model_version,
                        func.count(),
                        func.sum(
                            case(
                                # Spam or not a document (no label) overrides the model too.
                                (
                                    ReviewItem.decided_label.is_distinct_from(
                                        ReviewItem.predicted_label
                                    ),
                                    1,
                                ),
                                else_=0,
                            )
                        ),
                    )
                    .where(ReviewItem.status == "decided", ReviewItem.predicted_label.is_not(None))
                    .group_by(ReviewItem.model_version)
                    .order_by(ReviewItem.model_version)
                )
            ).all()
            reasons = (
                await session.execute(
                    select(ReviewItem.reason, func.count())
                    .where(ReviewItem.status.in_(OPEN_STATUSES))
                    .group_by(ReviewItem.reason)
                )
            ).all()
        return Dashboard(
            open_items=int(open_items),
            oldest_age_hours=(now - oldest).total_seconds() / 3600 if oldest else None,
            overdue=int(overdue),
            decisions_per_hour=[(h, int(n)) for h, n in per_hour],
            override_by_model=[(str(v), int(n), int(o or 0)) for v, n, o in overrides],
            by_reason={str(r): int(n) for r, n in reasons},
        )
