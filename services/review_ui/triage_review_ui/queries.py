"""Read-side queries for the review UI: the queue with filters, an item, audit, dashboard.

Filters come from query strings, so any text reaches here: values are bound parameters
(never SQL text), and values PostgreSQL cannot take (text with a NUL character, an item id
past bigint) match nothing instead of raising a DataError (a 500).

Reviewers work blind: a quality sample is shown, counted, filtered and sorted as the
low-confidence item it looks like (``SHOWN_REASON``), and no page or API field carries the
model's confidence, which would tell a confident routing from an uncertain one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from triage_contracts import utcnow
from triage_runtime.db.models import (
    SEARCH_CONFIG,
    AuditLog,
    Document,
    DocumentStatus,
    ReviewComment,
    ReviewItem,
)
from triage_runtime.routing import ReviewReason

OPEN_STATUSES = ("pending", "claimed")
MAX_BIGINT = 2**63 - 1
MAX_MAIL_PARTS = 50
"""The most parts of one mail an item page lists (a mail can carry hundreds)."""

_BLIND = {ReviewReason.QUALITY_SAMPLE.value: ReviewReason.LOW_CONFIDENCE.value}
"""Stored reasons a reviewer sees as another: a quality sample is a low-confidence item."""
SHOWN_REASON = case(
    *((ReviewItem.reason == stored, shown) for stored, shown in _BLIND.items()),
    else_=ReviewItem.reason,
)
"""``shown_reason`` in SQL, for filtering and counting as reviewers see it."""
SHOWN_REASONS = tuple(r.value for r in ReviewReason if r.value not in _BLIND)
"""The reasons a reviewer can filter by: the router's, as shown (none is hidden or invented)."""


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
    search: str | None = None
    """Words to find in the text, email subject, sender or name (web search syntax)."""
    escalated: bool = False
    """Only items someone escalated."""


class SortKey(enum.StrEnum):
    """The queue's sortable columns."""

    DUE = "due"
    RECEIVED = "received"
    PRIORITY = "priority"
    NAME = "name"


_SORT_COLUMNS: dict[SortKey, ColumnElement[Any] | InstrumentedAttribute[Any]] = {
    SortKey.DUE: ReviewItem.due_at,
    SortKey.RECEIVED: ReviewItem.received_at,
    SortKey.PRIORITY: ReviewItem.priority,
    # The name a reviewer sees (``domain.shown_name``): the file name, else the subject.
    SortKey.NAME: func.lower(func.coalesce(ReviewItem.filename, ReviewItem.email_subject, "")),
}


@dataclass(frozen=True, slots=True)
class QueueOrder:
    """How the queue is sorted: a column and a direction (ties: soonest due, most urgent)."""

    key: SortKey = SortKey.DUE
    descending: bool = False

    def clauses(self) -> list[ColumnElement[Any]]:
        """ORDER BY clauses for this order."""
        column = _SORT_COLUMNS[self.key]
        first = column.desc() if self.descending else column.asc()
        return [first, ReviewItem.due_at.asc(), ReviewItem.priority.asc(), ReviewItem.id.asc()]


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
    email_subject: str | None = None
    email_sender: str | None = None


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
    due_soon: int = 0
    """Open items not overdue but due within the due-soon hours."""
    escalated: int = 0
    """Open items someone escalated."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of an item's history: when, who, what, and the words (a note or comment)."""

    at: datetime
    actor: str | None
    action: str
    detail: str = ""
    text: str | None = None


@dataclass(frozen=True, slots=True)
class MailPart:
    """A document of a mail (its body or an attachment) as an item page lists it.

    ``item_id`` is its review item, if it has one; ``status`` and ``queue`` are its
    ``document_status`` (how it was routed), ``item_status``, ``decided_label`` and
    ``decision_kind`` its review item's.
    """

    document_id: str
    filename: str | None
    media_type: str
    is_body: bool
    status: str
    queue: str | None
    part: str | None = None
    item_id: int | None = None
    item_status: str | None = None
    decided_label: str | None = None
    decision_kind: str | None = None


@dataclass(frozen=True, slots=True)
class Mail:
    """The mail an item's document belongs to: its body (None when the item's document is
    the body, or the body was not recorded) and its other parts, the item's own document left
    out; ``more`` parts were not listed."""

    item_is_body: bool
    body: MailPart | None
    parts: list[MailPart]
    more: int = 0


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit row as the audit page shows it, with the note or comment it names."""

    row: AuditLog
    text: str | None


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
        email_subject=i.email_subject,
        email_sender=i.email_sender,
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
    if flt.search:
        query = query.where(
            false()
            if "\x00" in flt.search
            else ReviewItem.search_vector.op("@@")(
                func.websearch_to_tsquery(SEARCH_CONFIG, flt.search)
            )
        )
    if flt.escalated:
        query = query.where(ReviewItem.escalated_at.is_not(None))
    return query


def _words(row: AuditLog, comments: dict[int, str], item_notes: dict[int, str]) -> str | None:
    """The note or comment an audit row names; a decision from before notes were kept as
    comments shows its item's note."""
    detail = row.detail or {}
    for key in ("note_id", "comment_id"):
        if isinstance(detail.get(key), int):
            return comments.get(detail[key])
    if row.action in ("decide", "bulk_decide") and row.review_item_id is not None:
        return item_notes.get(row.review_item_id)
    return None


def _described(row: AuditLog) -> str:
    """What an audit row did, in words for an item's history (never a confidence)."""
    detail = row.detail or {}
    if row.action in ("decide", "bulk_decide"):
        return f"decided {detail.get('label', '')}"
    if row.action in ("undo", "reopen"):
        return f"{row.action} of {detail.get('label', '')} (decided by {detail.get('decided_by')})"
    if row.action == "escalate":
        return f"escalated: {detail.get('reason', '')}"
    return {"claim": "claimed", "comment": "commented"}.get(row.action, row.action)


def last_hours(now: datetime, count: int = 24) -> list[datetime]:
    """The starts of the last ``count`` hours (UTC), the current one last."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=count - 1 - n) for n in range(count)]


def every_hour(hours: list[datetime], counts: dict[datetime, int]) -> list[tuple[datetime, int]]:
    """Each of ``hours`` with its count, zero where nothing happened."""
    by_hour = {h.astimezone(UTC): n for h, n in counts.items()}
    return [(h, by_hour.get(h, 0)) for h in hours]


class ReviewQueries:
    """Queries against review_item and audit_log."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def open_queue(
        self,
        *,
        limit: int,
        flt: QueueFilter | None = None,
        offset: int = 0,
        order: QueueOrder | None = None,
    ) -> QueuePage:
        """Return open items matching ``flt`` in ``order`` (earliest due first), with counts."""
        flt = flt or QueueFilter()
        async with self._sessions() as session:
            items = (
                await session.execute(
                    _filtered(select(ReviewItem), flt)
                    .order_by(*(order or QueueOrder()).clauses())
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

    async def matching_ids(self, flt: QueueFilter, *, limit: int) -> list[int]:
        """Ids of the open items matching ``flt``, earliest due first, at most ``limit``."""
        async with self._sessions() as session:
            found = await session.execute(
                _filtered(select(ReviewItem.id), flt).order_by(*QueueOrder().clauses()).limit(limit)
            )
            return [int(i) for i in found.scalars()]

    async def item(self, item_id: int) -> ReviewItem | None:
        """One review item with everything the item page shows."""
        if not 0 < item_id <= MAX_BIGINT:
            return None
        async with self._sessions() as session:
            return await session.get(ReviewItem, item_id)

    async def mail(self, item: ReviewItem) -> Mail | None:
        """The mail ``item``'s document is a part of (or the body of), with its body and its
        other parts, each with its review item if it has one and how it was routed; None for a
        document that is no part of a mail (or was never recorded as a document)."""
        async with self._sessions() as session:
            parent = (
                await session.execute(
                    select(Document.parent_document_id).where(
                        Document.document_id == item.document_id
                    )
                )
            ).one_or_none()
            if parent is None:
                return None
            mail_id = parent[0] or item.document_id
            of_mail = (
                or_(Document.document_id == mail_id, Document.parent_document_id == mail_id),
                Document.document_id != item.document_id,
            )
            is_body = Document.document_id == mail_id
            limit = MAX_MAIL_PARTS + 1  # the body and the parts listed
            found = (
                await session.execute(
                    select(
                        Document.document_id,
                        Document.filename,
                        Document.media_type,
                        is_body,
                        DocumentStatus.status,
                        DocumentStatus.queue,
                        ReviewItem.email_part,
                        ReviewItem.id,
                        ReviewItem.status,
                        ReviewItem.decided_label,
                        ReviewItem.decision_kind,
                    )
                    .join(DocumentStatus, DocumentStatus.document_id == Document.document_id)
                    .outerjoin(ReviewItem, ReviewItem.document_id == Document.document_id)
                    .where(*of_mail)
                    .order_by(
                        is_body.desc(),
                        Document.received_at,
                        Document.filename,
                        Document.document_id,
                    )
                    .limit(limit + 1)
                )
            ).all()
            if parent[0] is None and not found:
                return None  # a document on its own, not a mail with parts
            more = 0
            if len(found) > limit:
                found = found[:limit]
                everything = (
                    await session.execute(
                        select(func.count()).select_from(Document).where(*of_mail)
                    )
                ).scalar_one()
                more = int(everything) - limit
        parts = [MailPart(*row) for row in found]
        body = next((p for p in parts if p.is_body), None)
        return Mail(
            item_is_body=parent[0] is None,
            body=body,
            parts=[p for p in parts if not p.is_body],
            more=more,
        )

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

    async def last_decided(self, reviewer: str, *, since: datetime) -> ReviewItem | None:
        """The item ``reviewer`` decided last, if they decided it after ``since``."""
        async with self._sessions() as session:
            return (
                await session.execute(
                    select(ReviewItem)
                    .where(
                        ReviewItem.status == "decided",
                        ReviewItem.decided_by == reviewer,
                        ReviewItem.decided_at > since,
                    )
                    .order_by(ReviewItem.decided_at.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()

    async def history(self, item: ReviewItem) -> list[HistoryEntry]:
        """What happened to ``item``, oldest first: arrival, the model's score (label and
        version, no confidence), then every audited action with its note or comment."""
        async with self._sessions() as session:
            rows = list(
                (
                    await session.execute(
                        select(AuditLog)
                        .where(AuditLog.review_item_id == item.id)
                        .order_by(AuditLog.id)
                    )
                ).scalars()
            )
            comments = await self._comments(session, rows)
        source = f"{item.source_kind}:{item.source_name}"
        entries = [HistoryEntry(item.received_at, None, "arrived", f"arrived from {source}")]
        if item.model_version:
            scored = f"scored {item.predicted_label or 'no label'} by {item.model_version}"
            entries.append(
                HistoryEntry(item.created_at, None, "scored", f"{scored} ({item.model_role})")
            )
        else:
            entries.append(HistoryEntry(item.created_at, None, "queued", "queued without a score"))
        notes = {item.id: item.note} if item.note else {}
        entries += [
            HistoryEntry(r.at, r.actor, r.action, _described(r), _words(r, comments, notes))
            for r in rows
        ]
        return entries

    @staticmethod
    async def _comments(session: AsyncSession, rows: list[AuditLog]) -> dict[int, str]:
        """The notes and comments ``rows`` name, by id (gone with their item: retention)."""
        ids = [
            value
            for r in rows
            for key, value in (r.detail or {}).items()
            if key in ("note_id", "comment_id") and isinstance(value, int)
        ]
        if not ids:
            return {}
        found = await session.execute(
            select(ReviewComment.id, ReviewComment.body).where(ReviewComment.id.in_(ids))
        )
        return {int(i): str(body) for i, body in found.all()}

    async def audit(self, *, limit: int = 200) -> tuple[list[AuditRow], list[tuple[str, int]]]:
        """The latest audit rows (with the notes and comments they name) and the number of
        decisions per reviewer."""
        async with self._sessions() as session:
            found = list(
                (
                    await session.execute(
                        select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
                    )
                ).scalars()
            )
            comments = await self._comments(session, found)
            decided = {r.review_item_id for r in found if r.action in ("decide", "bulk_decide")}
            notes = {
                int(i): str(note)
                for i, note in (
                    await session.execute(
                        select(ReviewItem.id, ReviewItem.note).where(
                            ReviewItem.id.in_([i for i in decided if i is not None]),
                            ReviewItem.note.is_not(None),
                        )
                    )
                ).all()
            }
            rows = [AuditRow(r, _words(r, comments, notes)) for r in found]
            counts = (
                await session.execute(
                    select(AuditLog.actor, func.count())
                    .where(AuditLog.action.in_(("decide", "bulk_decide")))
                    .group_by(AuditLog.actor)
                    .order_by(func.count().desc())
                )
            ).all()
        return rows, [(str(a), int(n)) for a, n in counts]

    async def dashboard(self, *, due_soon: timedelta = timedelta(hours=2)) -> Dashboard:
        """Queue depth and age, due soon, overdue and escalated, decisions in each of the last
        24 hours, override rate per model version."""
        now = utcnow()
        hours = last_hours(now)
        async with self._sessions() as session:
            open_items, oldest, overdue, soon, escalated = (
                await session.execute(
                    select(
                        func.count(),
                        func.min(ReviewItem.received_at),
                        func.count().filter(ReviewItem.due_at < now),
                        func.count().filter(
                            ReviewItem.due_at >= now, ReviewItem.due_at < now + due_soon
                        ),
                        func.count().filter(ReviewItem.escalated_at.is_not(None)),
                    ).where(ReviewItem.status.in_(OPEN_STATUSES))
                )
            ).one()
            hour = func.date_trunc("hour", ReviewItem.decided_at, "UTC")  # not the session zone
            per_hour = (
                await session.execute(
                    select(hour, func.count())
                    .where(ReviewItem.decided_at >= hours[0])
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
            due_soon=int(soon),
            escalated=int(escalated),
            decisions_per_hour=every_hour(hours, {h: int(n) for h, n in per_hour}),
            override_by_model=[(str(v), int(n), int(o or 0)) for v, n, o in overrides],
            by_reason={str(r): int(n) for r, n in reasons},
        )
