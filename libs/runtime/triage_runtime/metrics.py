"""Metrics every service exports, declared once. Labels are bounded sets, never ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "triage_events_consumed_total",
    "Messages consumed, by topic and outcome (ok, deadlettered, retried).",
    ["service", "topic", "outcome"],
)
EVENTS_PRODUCED = Counter(
    "triage_events_produced_total",
    "Events published, by topic family.",
    ["service", "topic"],
)
DEAD_LETTERS = Counter(
    "triage_dead_letters_total",
    "Messages sent to the dead-letter topic, by stage and error class.",
    ["service", "error_class"],
)

HEADER_TIMEOUTS = Counter(
    "triage_http_header_timeouts_total",
    "Connections closed because a request's headers did not all arrive within "
    "TRIAGE_HEADER_TIMEOUT_SECONDS (slow or stalled clients).",
    ["service"],
)


def topic_family(topic: str) -> str:
    """Collapse per-queue topics into one label value, keeping label sets bounded."""
    return "triage.routed.*" if topic.startswith("triage.routed.") else topic


CONSUMER_LAG = Gauge(
    "triage_consumer_lag",
    "Messages a service's consumer group has yet to commit, per topic partition this "
    "instance holds (instances hold disjoint partitions: their sum is the group's lag).",
    ["service", "topic", "partition"],
)
OUTBOX_PUBLISHED = Counter(
    "triage_outbox_published_total",
    "Outbox events published, by path (direct: right after their commit; relay: later).",
    ["service", "path"],
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "triage_outbox_publish_failures_total",
    "Outbox publishes that failed (the events stay pending for the relay), by path.",
    ["service", "path"],
)
OUTBOX_PENDING = Gauge(
    "triage_outbox_pending",
    "Outbox events committed and not yet published, as the service's relay last read it.",
    ["service"],
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "triage_outbox_oldest_pending_seconds",
    "Age of the oldest outbox event not yet published (0: none), as the relay last read it.",
    ["service"],
)
HTTP_REQUESTS = Counter(
    "triage_http_requests_total",
    "HTTP requests answered, by method, route template and status code (every answer, "
    "those sent by middleware before a route ran and unhandled errors' 500 included).",
    ["service", "method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "triage_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template.",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
