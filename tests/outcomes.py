"""What became of the documents clients were told were accepted, judged from the outcome
tables and from the topics read to their end (never from ingest's own ``document`` table,
which a document dropped before it is recorded never reaches)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, text

from tests.faults.harness import group_lag, read_topics

OUTCOME_KINDS = frozenset({"routed", "review", "dead_letter", "discarded"})
"""The outcomes a document can reach (``document_outcome.kind``)."""


@dataclass(frozen=True)
class Fate:
    """One promised document, as the topics and the outcome tables show it."""

    received_events: int
    """Distinct DocumentReceived event ids for it on the documents topic."""
    received_records: int
    """DocumentReceived records for it there (the same event published again counts too)."""
    classified_events: int
    """DocumentClassified records for it on the classified topic (each a scoring)."""
    outcome: str | None
    """Its ``document_outcome`` kind (one row at most: the primary key)."""
    routings: int
    review_items: int

    @property
    def lost(self) -> bool:
        """Accepted, but it reached no outcome."""
        return self.outcome not in OUTCOME_KINDS

    @property
    def duplicated(self) -> bool:
        """Published as two documents, or both routed and in review, or either twice."""
        return (
            self.received_events > 1
            or self.routings > 1
            or self.review_items > 1
            or (self.routings > 0 and self.review_items > 0)
        )


@dataclass
class Judgement:
    """Fates of the promised documents, and what the topics hold besides."""

    fates: dict[str, Fate]
    received: list[dict[str, Any]] = field(default_factory=list)
    """Every record of the documents topic, decoded (see ``tests.faults.harness``)."""

    @property
    def lost(self) -> list[str]:
        """Promised documents with no outcome."""
        return sorted(d for d, fate in self.fates.items() if fate.lost)

    @property
    def duplicated(self) -> list[str]:
        """Promised documents with more than one document's worth of events or outcomes."""
        return sorted(d for d, fate in self.fates.items() if fate.duplicated)


def _count(rows: Sequence[Any]) -> Counter[str]:
    return Counter({str(row[0]): int(row[1]) for row in rows})


def _tables(database_url: str, ids: list[str]) -> tuple[dict[str, str], Counter[str], Counter[str]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:

            def rows(sql: str) -> Sequence[Any]:
                return conn.execute(text(sql), {"ids": ids}).all()

            outcomes = {
                str(r[0]): str(r[1])
                for r in rows(
                    "SELECT document_id, kind FROM document_outcome WHERE document_id = ANY(:ids)"
                )
            }
            routings = _count(
                rows(
                    "SELECT document_id, count(*) FROM routing_decision"
                    " WHERE document_id = ANY(:ids) GROUP BY document_id"
                )
            )
            reviews = _count(
                rows(
                    "SELECT document_id, count(*) FROM review_item"
                    " WHERE document_id = ANY(:ids) GROUP BY document_id"
                )
            )
        return outcomes, routings, reviews
    finally:
        engine.dispose()


def outcomes_reached(database_url: str, ids: Collection[str]) -> set[str]:
    """Which of ``ids`` have an outcome now."""
    return set(_tables(database_url, sorted(ids))[0])


def wait_for_outcomes(
    database_url: str,
    ids: Collection[str],
    *,
    bootstrap: str,
    groups: Sequence[tuple[str, str]],
    timeout: float,
    quiet_seconds: float = 10.0,
) -> set[str]:
    """Wait until every one of ``ids`` has an outcome, or until the pipeline has stopped
    working on anything (no consumer group of ``groups``, (group, topic) pairs, lags and no
    outcome has appeared for ``quiet_seconds``); return the ids with an outcome.

    A document dropped on the way never gets one: the wait ends when nothing moves any more,
    not at ``timeout``, and the caller judges what is missing.
    """
    deadline = time.monotonic() + timeout
    reached: set[str] = set()
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        now = outcomes_reached(database_url, ids)
        if now >= set(ids):
            return now
        if now != reached:
            reached, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet_seconds:
            lags = [asyncio.run(group_lag(bootstrap, group, topic)) for group, topic in groups]
            if not any(lags):
                return now
        time.sleep(0.5)
    return reached


def judge(
    database_url: str,
    ids: Collection[str],
    *,
    bootstrap: str,
    documents_topic: str,
    classified_topic: str | None = None,
) -> Judgement:
    """Each promised document's fate: its events on the topics, read to their end, and its
    rows in the outcome tables."""
    wanted = sorted(ids)
    received = asyncio.run(read_topics(bootstrap, [documents_topic]))
    classified = asyncio.run(read_topics(bootstrap, [classified_topic])) if classified_topic else []
    event_ids: dict[str, set[str]] = defaultdict(set)
    records: Counter[str] = Counter()
    for record in received:
        value = record["value"] or {}
        if value.get("schema_name") == "DocumentReceived":
            event_ids[value["document_id"]].add(value["event_id"])
            records[value["document_id"]] += 1
    scorings = Counter(
        (record["value"] or {}).get("document_id")
        for record in classified
        if (record["value"] or {}).get("schema_name") == "DocumentClassified"
    )
    outcomes, routings, reviews = _tables(database_url, wanted)
    fates = {
        document_id: Fate(
            received_events=len(event_ids.get(document_id, ())),
            received_records=records[document_id],
            classified_events=scorings.get(document_id, 0),
            outcome=outcomes.get(document_id),
            routings=routings[document_id],
            review_items=reviews[document_id],
        )
        for document_id in wanted
    }
    return Judgement(fates, received)
