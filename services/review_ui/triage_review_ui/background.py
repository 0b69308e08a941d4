"""The review UI's background work: publishing decided items' events (the workflow's outbox)
and refreshing the queue gauges, each a loop that logs a failure and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from faststream.kafka import KafkaBroker

from triage_contracts import DocumentRoutedV1, ReviewDecisionV1, topics
from triage_review_ui.metrics import OLDEST_AGE_SECONDS, OPEN_ITEMS, OVERDUE_ITEMS
from triage_review_ui.queries import ReviewQueries
from triage_review_ui.settings import Settings
from triage_runtime.kafka import publish_event
from triage_runtime.metrics import EVENTS_PRODUCED, topic_family
from triage_runtime.outcomes.review import ReviewWorkflow

# Bounded label values for the queue gauges (the router's review reasons).
REASONS = ("low_confidence", "extraction_failed", "encrypted", "model_unavailable")
# Under app.py's logger name, as before these loops moved here: the log lines are unchanged.
log = logging.getLogger("triage_review_ui.app")


class DecisionRelay:
    """Publishes the events of decisions not yet published, with the settings' topic names."""

    def __init__(
        self, workflow: ReviewWorkflow, broker: KafkaBroker, settings: Settings, *, service: str
    ) -> None:
        self._workflow = workflow
        self._broker = broker
        self._settings = settings
        self._service = service

    async def publish(self, topic: str, event: ReviewDecisionV1 | DocumentRoutedV1) -> None:
        """Publish one event and count it under its topic family."""
        await publish_event(self._broker, topic, event)
        family = topic_family(topic.removeprefix(self._settings.topic_prefix))
        EVENTS_PRODUCED.labels(self._service, family).inc()

    async def publish_pending(self) -> None:
        """One pass over the outbox."""
        settings = self._settings
        await self._workflow.publish_pending(
            self.publish,
            decisions_topic=settings.topic(topics.REVIEW_DECISIONS),
            routed_topic=lambda q: settings.topic(topics.routed_topic(q)),
        )


class QueueGauges:
    """Sets the review queue gauges alerting watches from the dashboard's numbers."""

    def __init__(self, queries: ReviewQueries) -> None:
        self._queries = queries

    async def refresh(self) -> None:
        """Read the queue once and set the gauges."""
        stats = await self._queries.dashboard()
        for reason in REASONS:
            OPEN_ITEMS.labels(reason).set(stats.by_reason.get(reason, 0))
        OLDEST_AGE_SECONDS.set((stats.oldest_age_hours or 0.0) * 3600)
        OVERDUE_ITEMS.set(stats.overdue)


async def every(seconds: float, work: Callable[[], Awaitable[None]], failure: str) -> None:
    """Run ``work`` now and every ``seconds`` until cancelled; log a failure and carry on."""
    while True:
        try:
            await work()
        except Exception:
            log.exception(failure)
        await asyncio.sleep(seconds)


@asynccontextmanager
async def running(
    relay: DecisionRelay, gauges: QueueGauges, settings: Settings
) -> AsyncIterator[None]:
    """Run the relay and the gauges while the app serves; cancel both when it stops."""
    tasks = [
        asyncio.create_task(
            every(
                settings.publish_interval_seconds,
                relay.publish_pending,
                "publishing review decisions failed; retrying",
            ),
            name="decision-relay",
        ),
        asyncio.create_task(
            every(
                settings.gauge_interval_seconds,
                gauges.refresh,
                "could not refresh the review queue gauges",
            ),
            name="queue-gauges",
        ),
    ]
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
