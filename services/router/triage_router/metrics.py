"""Router metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SERVICE = "router"
"""The ``service`` label of the shared metrics (``triage_runtime.metrics``)."""

DECISIONS = Counter(
    "triage_router_decisions_total",
    "Routing outcomes: routed (reason quality_sample when also sent to blind review), or "
    "review with its reason.",
    ["outcome", "reason"],
)
DUPLICATES = Counter(
    "triage_router_duplicates_total",
    "Redelivered messages recognised as already handled.",
)
END_TO_END_SECONDS = Histogram(
    "triage_end_to_end_seconds",
    "Time from receipt by ingest to routing or review, by outcome.",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PROCESS_SECONDS = Histogram(
    "triage_router_process_seconds",
    "Time to handle one classified event (decide, store, publish), by outcome.",
    ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
