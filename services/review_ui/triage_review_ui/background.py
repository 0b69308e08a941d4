"""The review UI's background work: refreshing the queue gauges, a loop that logs a failure
and carries on (the outbox relay is ``triage_runtime.outbox``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from triage_review_ui.metrics import OLDEST_AGE_SECONDS, OPEN_ITEMS, OVERDUE_ITEMS
from triage_review_ui.queries import ReviewQueries
from triage_review_ui.settings import Settings

# Bounded label values for the queue gauges (the router's review reasons).
REASONS = ("low_confidence", "extraction_failed", "encrypted", "model_unavailable")
# Under app.py's logger name, as before these loops moved here: the log lines are unchanged.
log = logging.getLogger("triage_review_ui.app")


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
async def running(gauges: QueueGauges, settings: Settings) -> AsyncIterator[None]:
    """Refresh the gauges while the app serves; stop when it stops."""
    tasks = [
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
