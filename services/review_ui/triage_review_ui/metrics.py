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


LIVE_PRECISION = Gauge(
    "triage_live_precision_ratio",
    "Live precision of routings to each label: the share of decided blind quality samples "
    "the reviewer left in the routed queue, over TRIAGE_REVIEW_UI_QUALITY_WINDOW_DAYS "
    "(NaN before any is decided).",
    ["label"],
)
LIVE_PRECISION_LOWER = Gauge(
    "triage_live_precision_lower_bound_ratio",
    "Lower end of live precision's Wilson interval (TRIAGE_REVIEW_UI_QUALITY_CONFIDENCE); "
    "0 before any sample is decided.",
    ["label"],
)
QUALITY_SAMPLES_DECIDED = Gauge(
    "triage_quality_samples_decided",
    "Decided blind quality samples of routings to each label in the live-precision window.",
    ["label"],
)
LIVE_PRECISION_TARGET = Gauge(
    "triage_live_precision_target_ratio",
    "The current routing policy's target precision (what live precision is held to).",
)


def count_decision(model_version: str, model_role: str, agreed: bool) -> None:
    """Count a reviewer's decision on a scored item: did they agree with the model?"""
    DECISIONS.labels(model_version, model_role, "agreed" if agreed else "overridden").inc()
