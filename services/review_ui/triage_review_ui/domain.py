"""What the review UI decides without I/O: redirects, filters, due times, how a file is sent."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from triage_contracts import utcnow
from triage_review_ui.queries import QueueFilter


def is_local_path(target: str) -> bool:
    """Whether a post-login redirect stays on this site (no scheme, host, or //, /\\ tricks)."""
    return target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target


def due_in(due_at: datetime, now: datetime | None = None) -> str:
    """An item's due time as the pages show it: "due in 2h 5m" or "overdue 0h 12m"."""
    minutes = int((due_at - (now or utcnow())).total_seconds() // 60)
    if minutes < 0:
        return f"overdue {-minutes // 60}h {-minutes % 60}m"
    return f"due in {minutes // 60}h {minutes % 60}m"


def queue_filter(
    reason: str | None,
    label: str | None,
    source: str | None,
    age: float | None,
    *,
    escalated: bool = False,
) -> QueueFilter:
    """The queue filter a query string asks for; an empty field filters nothing."""
    return QueueFilter(
        reason=reason or None,
        label=label or None,
        source=source or None,
        min_age_hours=age,
        escalated=escalated,
    )


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
