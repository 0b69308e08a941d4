"""Review UI metrics, declared once: the queue as ops and alerting see it."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OPEN_ITEMS = Gauge(
    "triage_review_queue_open_items",
    "Review items waiting for a decision (pending or claimed), by reason.",
    ["reason"],
)
OLDEST_AGE_SECONDS = Gauge(
    "triage_review_queue_oldest_age_seconds",
    "Age of the oldest open review item (0 when the queue is empty).",
)
OVERDUE_ITEMS = Gauge(
    "triage_review_queue_overdue_items",
    "Open review items past their due time (the review SLA).",
)
DECISIONS = Counter(
    "triage_review_decisions_total",
    "Human decisions, by the model version and role that scored the item, and whether the "
    "reviewer agreed with its label or overrode it (override rate = overridden / all).",
    ["model_version", "model_role", "outcome"],
)


def count_decision(model_version: str, model_role: str, agreed: bool) -> None:
    """Count a reviewer's decision on a scored item: did they agree with the model?"""
    DECISIONS.labels(model_version, model_role, "agreed" if agreed else "overridden").inc()
