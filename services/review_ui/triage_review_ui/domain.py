"""What the review UI decides without I/O: redirects, filters, due times, how a file is sent,
claims as the item page shows them, and what a decision form's choice means."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from triage_contracts import utcnow
from triage_review_ui.queries import OPEN_STATUSES, MailPart, QueueFilter, QueueOrder, SortKey
from triage_runtime.db.models import ReviewItem
from triage_runtime.outcomes.review import DISCARDS, DecisionKind


def is_local_path(target: str) -> bool:
    """Whether a post-login redirect stays on this site (no scheme, host, or //, /\\ tricks)."""
    return target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target


def due_in(due_at: datetime, now: datetime | None = None) -> str:
    """An item's due time as the pages show it: "due in 2h 5m" or "overdue 0h 12m"."""
    minutes = int((due_at - (now or utcnow())).total_seconds() // 60)
    if minutes < 0:
        return f"overdue {-minutes // 60}h {-minutes % 60}m"
    return f"due in {minutes // 60}h {minutes % 60}m"


def sla(due_at: datetime, soon: timedelta, now: datetime | None = None) -> str | None:
    """ "overdue", "due soon" (within ``soon``) or None: how the queue marks an item's due time."""
    left = due_at - (now or utcnow())
    if left < timedelta(0):
        return "overdue"
    return "due soon" if left <= soon else None


def shown_name(item: Any) -> str:
    """What an item is called on every page: its file name, else its email subject."""
    name = getattr(item, "filename", None) or getattr(item, "email_subject", None)
    return str(name).strip() if name and str(name).strip() else "(no name)"


def no_blank(value: object) -> object:
    """An empty query-string field means "not given" (a form sends every field, empty or not)."""
    return None if isinstance(value, str) and not value.strip() else value


def hours_text(hours: float | None) -> str:
    """Hours as a person types them: "10", "0.5" (not "10.0"); "" for none."""
    return "" if hours is None else format(hours, ".15g")


def queue_filter(
    reason: str | None,
    label: str | None,
    source: str | None,
    age: float | None,
    search: str | None = None,
    *,
    escalated: bool = False,
) -> QueueFilter:
    """The queue filter a query string asks for; an empty field filters nothing."""
    return QueueFilter(
        reason=reason or None,
        label=label or None,
        source=source or None,
        min_age_hours=age,
        search=(search or "").strip() or None,
        escalated=escalated,
    )


@dataclass(frozen=True, slots=True)
class QueueView:
    """What the queue page shows (filters, order, offset), and the links that keep it."""

    flt: QueueFilter
    order: QueueOrder
    offset: int
    page_size: int

    def url(self, path: str = "/", *, label_param: str = "label", **changes: Any) -> str:
        """This view's address with ``changes`` (offset, order); filters always kept.

        ``label_param`` names the label filter where ``label`` means something else.
        """
        view = replace(self, **changes)
        params: dict[str, Any] = {
            "q": view.flt.search,
            "reason": view.flt.reason,
            label_param: view.flt.label,
            "source": view.flt.source,
            "age": hours_text(view.flt.min_age_hours),
            "escalated": "true" if view.flt.escalated else None,
        }
        if view.order != QueueOrder():
            params["sort"] = view.order.key.value
            params["dir"] = "desc" if view.order.descending else "asc"
        if view.offset:
            params["offset"] = view.offset
        query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
        return f"{path}?{query}" if query else path

    def narrowed(self, **filters: Any) -> str:
        """This view's address with ``filters`` changed (from the first page); others kept."""
        return self.url(flt=replace(self.flt, **filters), offset=0)

    def sorted_by(self, key: str) -> str:
        """The link of a column header: sort by ``key``, or reverse it if already sorted so."""
        sort = SortKey(key)
        descending = not self.order.descending if self.order.key is sort else False
        return self.url(order=QueueOrder(sort, descending), offset=0)

    def sort_state(self, key: str) -> str:
        """``aria-sort`` of a column header: "ascending", "descending" or "none"."""
        if self.order.key is not SortKey(key):
            return "none"
        return "descending" if self.order.descending else "ascending"

    @property
    def page(self) -> int:
        """This page's number, from 1."""
        return self.offset // self.page_size + 1

    def pages(self, matching: int) -> int:
        """How many pages ``matching`` items fill (at least 1)."""
        return max(1, -(-matching // self.page_size))

    def page_url(self, number: int) -> str:
        """The address of page ``number`` of this view."""
        return self.url(offset=(number - 1) * self.page_size)

    def page_numbers(self, matching: int, around: int = 2) -> list[int | None]:
        """Page numbers to link: first, last and those near this one; None for a gap."""
        last = self.pages(matching)
        wanted = {1, last, *range(self.page - around, self.page + around + 1)}
        shown = sorted(n for n in wanted if 1 <= n <= last)
        numbers: list[int | None] = []
        for before, n in zip([0, *shown], shown, strict=False):
            if before and n - before > 1:
                numbers.append(None)
            numbers.append(n)
        return numbers


def top_probabilities(
    probabilities: Mapping[str, Any] | None, count: int = 5
) -> list[tuple[str, Any]]:
    """The model's most likely labels first, at most ``count`` of them."""
    return sorted((probabilities or {}).items(), key=lambda kv: kv[1], reverse=True)[:count]


def sent_as(item_id: int, media_type: str) -> tuple[str, dict[str, str]]:
    """The media type and headers a document is sent with: a PDF inline, anything else only
    as a download the browser never runs here.
    """
    inline = media_type == "application/pdf"
    disposition = "inline" if inline else "attachment"
    headers = {
        "Content-Disposition": f'{disposition}; filename="document-{item_id}"',
        "X-Content-Type-Options": "nosniff",
    }
    if not inline:
        headers["Content-Security-Policy"] = "sandbox"
    return (media_type if inline else "application/octet-stream"), headers


class ClaimState(StrEnum):
    """An item's claim as one reviewer sees it."""

    MINE = "mine"
    """They hold it (also a lapsed claim nobody took since: renewing it is theirs)."""
    OTHER = "other"
    """Someone else holds a live claim."""
    FREE = "free"
    """Nobody holds a live claim: anyone may claim or decide it."""
    DECIDED = "decided"
    CLOSED = "closed"


def claim_state(item: ReviewItem, reviewer: str, now: datetime | None = None) -> ClaimState:
    """Whose an item is, for ``reviewer``."""
    if item.status in ("decided", "closed"):
        return ClaimState(item.status)
    if item.status == "claimed" and item.claimed_by == reviewer:
        return ClaimState.MINE
    live = item.claimed_until is not None and item.claimed_until >= (now or utcnow())
    if item.claimed_by is not None and live:
        return ClaimState.OTHER
    return ClaimState.FREE


DISCARD = "discard:"
"""The decision form's value prefix for a discard: no queue name can contain a colon."""


def discard_choices() -> list[tuple[str, str]]:
    """The decision form's discard choices: (form value, what the reviewer reads)."""
    shown = {DecisionKind.SPAM: "Spam", DecisionKind.NOT_DOCUMENT: "Not a document"}
    return [(DISCARD + kind.value, shown[kind]) for kind in sorted(DISCARDS)]


def chosen(value: str) -> DecisionKind | str:
    """A decision form's choice: a discard's kind, or the queue's name as sent."""
    if value.startswith(DISCARD):
        kind = value.removeprefix(DISCARD)
        if kind in {k.value for k in DISCARDS}:
            return DecisionKind(kind)
    return value


_ITEM_ACTION = re.compile(r"^/items/(\d{1,19})/[a-z-]+$")


def login_next(method: str, path: str) -> str:
    """Where to go after signing in, for a request that found no session (URL-quoted).

    A form sent to an item (deciding, claiming) returns to the item's page, marked so the
    page restores the choice its tab kept (``review.js``); another form goes to the queue
    (a POST-only address cannot be opened after sign-in)."""
    if method == "GET":
        return quote(path, safe="/")
    found = _ITEM_ACTION.match(path)
    return quote(f"/items/{found.group(1)}?restore=1", safe="/") if found else "/"


def decision_choices(labels: list[str], other_queues: list[str]) -> list[tuple[str, str]]:
    """Every choice of the decision form, in key order (1 to 9 pick the first nine): the model's
    labels, the other queues, then the discards; (form value, what the reviewer reads)."""
    queues = [(q, q) for q in labels] + [(q, q) for q in other_queues if q not in labels]
    return queues + discard_choices()


class Decided(Protocol):
    """A decided review item's decision (a ReviewItem, a MailPart)."""

    @property
    def decided_label(self) -> str | None: ...
    @property
    def decision_kind(self) -> str | None: ...


def decision_text(item: Decided) -> str:
    """A decided item's decision as people read it: its queue, or what it was discarded as."""
    if item.decided_label:
        return item.decided_label
    return dict(discard_choices()).get(DISCARD + (item.decision_kind or ""), "?").lower()


_ROUTED_WORDS = {
    "received": "not scored yet",
    "in_review": "in review",
    "discarded": "discarded",
    "dead_lettered": "dead-lettered",
}


def part_state(part: MailPart) -> str:
    """How a mail's part fared, in words: in review or decided (its review item, which a
    reviewer sees first: an item still open is "in review" whatever else is recorded, as a blind
    quality sample must be), else how it was routed (its ``document_status``)."""
    if part.item_status in OPEN_STATUSES:
        return "in review"
    if part.item_status == "decided":
        return f"decided: {decision_text(part)}"
    if part.status == "routed":
        return f"routed to {part.queue}"
    if part.status == "decided":
        return f"routed to {part.queue} by a reviewer"
    return _ROUTED_WORDS.get(part.status, part.status)
