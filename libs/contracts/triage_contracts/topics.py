"""Kafka topic names. A breaking change to a topic's payload is a new topic (``.v2``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

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

CLASSIFIER_GROUP = "triage-classifier"
"""The classifier's default consumer group (``TRIAGE_CLASSIFIER_GROUP_ID``) on DOCUMENTS."""

ROUTER_GROUP = "triage-router"
"""The router's default consumer group (``TRIAGE_ROUTER_GROUP_ID``) on CLASSIFIED."""


def retry_group(group: str) -> str:
    """The classifier's group on DOCUMENTS_RETRY: its own, so a retry never rebalances (and
    redelivers) the documents group."""
    return f"{group}.retry"


def dead_letter_group(group: str) -> str:
    """The router's group on DEADLETTER: its own, so it never rebalances the classified group."""
    return f"{group}.deadletters"


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


DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    """How one topic should exist on a cluster (``triage topics plan`` / ``apply``)."""

    name: str
    partitions: int
    retention_ms: int
    """How long records are kept; -1 keeps them for ever."""
    cleanup_policy: str = "delete"
    replication_factor: int = 3
    min_insync_replicas: int = 2

    def configs(self) -> dict[str, str]:
        """The topic-level Kafka configs this spec owns, as the broker spells them."""
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            "min.insync.replicas": str(self.min_insync_replicas),
        }


FIXED_SPECS = (
    TopicSpec(name=DOCUMENTS, partitions=6, retention_ms=7 * DAY_MS),
    TopicSpec(name=DOCUMENTS_RETRY, partitions=3, retention_ms=7 * DAY_MS),
    TopicSpec(name=CLASSIFIED, partitions=6, retention_ms=7 * DAY_MS),
    TopicSpec(name=CLASSIFIED_SHADOW, partitions=3, retention_ms=3 * DAY_MS),
    # Decisions feed every later training set; losing them loses labels.
    TopicSpec(name=REVIEW_DECISIONS, partitions=3, retention_ms=-1),
    TopicSpec(name=DEADLETTER, partitions=1, retention_ms=30 * DAY_MS),
)

ROUTED_PARTITIONS = 3
ROUTED_RETENTION_MS = 14 * DAY_MS


def routed_spec(name: str) -> TopicSpec:
    """The declared settings of a routed topic (``name`` is the topic or its template)."""
    return TopicSpec(name=name, partitions=ROUTED_PARTITIONS, retention_ms=ROUTED_RETENTION_MS)


def declared_topics(queues: Iterable[str], *, replication_factor: int = 3) -> tuple[TopicSpec, ...]:
    """The one declared list: every fixed topic and one routed topic per queue.

    ``replication_factor`` is the cluster's (1 on a one-broker development stack); the
    minimum in-sync replicas follows it, one fewer, at least 1.
    """
    if replication_factor < 1:
        raise ValueError(f"replication factor must be at least 1, not {replication_factor}")
    routed = (
        TopicSpec(
            name=routed_topic(q), partitions=ROUTED_PARTITIONS, retention_ms=ROUTED_RETENTION_MS
        )
        for q in sorted(set(queues))
    )
    return tuple(
        replace(
            spec,
            replication_factor=replication_factor,
            min_insync_replicas=max(1, replication_factor - 1),
        )
        for spec in (*FIXED_SPECS, *routed)
    )
