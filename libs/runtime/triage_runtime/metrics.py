"""Metrics every service exports, declared once. Labels are bounded sets, never ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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


def topic_family(topic: str) -> str:
    """Collapse per-queue topics into one label value, keeping label sets bounded."""
    return "triage.routed.*" if topic.startswith("triage.routed.") else topic


CONSUMER_LAG = Gauge(
    "triage_consumer_lag",
    "Messages a service's consumer group has yet to commit, per topic partition.",
    ["service", "topic", "partition"],
)
