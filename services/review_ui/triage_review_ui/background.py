"""The review UI's background work: refreshing the queue and live-precision gauges, a loop
that logs a failure and carries on (the outbox relay is ``triage_runtime.outbox``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from triage_review_ui.metrics import (
    LIVE_PRECISION,
    LIVE_PRECISION_LOWER,
    LIVE_PRECISION_TARGET,
    OLDEST_AGE_SECONDS,
    OPEN_ITEMS,
    OVERDUE_ITEMS,
    QUALITY_SAMPLES_DECIDED,
)
from triage_review_ui.queries import ReviewQueries
from triage_review_ui.settings import Settings
from triage_runtime.outcomes.quality import LivePrecision, QualitySamples
from triage_runtime.policy_store import PolicyStore
from triage_runtime.routing import ReviewReason

# Bounded label values for the queue gauges (the router's review reasons).
REASONS = tuple(reason.value for reason in ReviewReason)
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


class LiveQuality:
    """Each label's live precision under the current policy's target, for the gauges and
    the dashboard (the computation is ``triage_runtime.outcomes.quality``)."""

    def __init__(self, samples: QualitySamples, policies: PolicyStore, settings: Settings) -> None:
        self._samples = samples
        self._policies = policies
        self._settings = settings

    async def read(self) -> tuple[list[LivePrecision], float]:
        """Each label's live precision (every configured queue listed), and the target."""
        target = (await self._policies.current()).target_precision
        labels = await self._samples.live_precision(
            window=timedelta(days=self._settings.quality_window_days),
            confidence=self._settings.quality_confidence,
            labels=self._settings.labels,
        )
        return labels, target

    async def refresh(self) -> None:
        """Read live precision once and set the gauges."""
        labels, target = await self.read()
        LIVE_PRECISION_TARGET.set(target)
        for one in labels:
            precision = one.precision
            LIVE_PRECISION.labels(one.label).set(float("nan") if precision is None else precision)
            LIVE_PRECISION_LOWER.labels(one.label).set(one.lower)
            QUALITY_SAMPLES_DECIDED.labels(one.label).set(one.decided)


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
    gauges: QueueGauges, quality: LiveQuality, settings: Settings
) -> AsyncIterator[None]:
    """Refresh the gauges while the app serves; stop when it stops."""
    tasks = [
        asyncio.create_task(
            every(
                settings.gauge_interval_seconds,
                quality.refresh,
                "could not refresh the live precision gauges",
            ),
            name="live-precision-gauges",
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
