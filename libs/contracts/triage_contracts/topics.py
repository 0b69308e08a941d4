"""Kafka topic names. A breaking change to a topic's payload is a new topic (``.v2``)."""

from __future__ import annotations

import re

DOCUMENTS = "triage.documents.v1"
"""DocumentReceived events, keyed by document id."""

DOCUMENTS_RETRY = "triage.documents.retry.v1"
"""DocumentReceived records the classifier could not process for a transient reason (the
blob store did not answer), waiting for another attempt; headers say which attempt and when."""

CLASSIFIED = "triage.classified.v1"
"""DocumentClassified events from the champion and canary models, keyed by document id."""

CLASSIFIED_SHADOW = "triage.classified.shadow.v1"
"""DocumentClassified events from the shadow model; never routed."""

REVIEW_DECISIONS = "triage.review.decisions.v1"
"""ReviewDecision events, one per human decision."""

DEADLETTER = "triage.deadletter.v1"
"""DeadLetter records: what failed, where, why, and the original message."""

ROUTED_PREFIX = "triage.routed."
ROUTED_SUFFIX = ".v1"

QUEUE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def routed_topic(queue: str) -> str:
    """Return the topic that carries DocumentRouted events for one operational queue."""
    if not QUEUE_NAME.fullmatch(queue):
        raise ValueError(f"queue name {queue!r} does not match {QUEUE_NAME.pattern}")
    return f"{ROUTED_PREFIX}{queue}{ROUTED_SUFFIX}"


ROUTED_PATTERN = r"triage\.routed\.[a-z][a-z0-9_-]*\.v1"
"""A regular expression matching every per-queue routed topic."""

ALL_FIXED = (
    DOCUMENTS,
    DOCUMENTS_RETRY,
    CLASSIFIED,
    CLASSIFIED_SHADOW,
    REVIEW_DECISIONS,
    DEADLETTER,
)
