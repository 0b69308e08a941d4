"""Live precision: how often reviewers agree with the queue the model routed a document to,
measured on the blind quality samples (review items with reason ``quality_sample``).

One computation for every reader (the review UI's gauges and dashboard, and any tool):
per label, the decided samples of routings in a recent window, the share the reviewer put
in the routed queue, and its Wilson interval. docs/review.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from triage_contracts import utcnow
from triage_contracts.intervals import wilson_interval
from triage_runtime.db.models import ReviewItem
from triage_runtime.routing import ReviewReason


@dataclass(frozen=True, slots=True)
class LivePrecision:
    """One label's live precision: ``agreed`` of ``decided`` samples, and its interval."""

    label: str
    decided: int
    agreed: int
    lower: float
    upper: float

    @property
    def precision(self) -> float | None:
        """The share of decided samples the reviewer left in the routed queue; None: none."""
        return self.agreed / self.decided if self.decided else None

    def below(self, target: float, *, min_samples: int) -> bool:
        """Whether the lower bound is below ``target`` with at least ``min_samples`` decided."""
        return self.decided >= min_samples and self.lower < target


def live_precision(
    counts: Mapping[str, tuple[int, int]],
    *,
    confidence: float,
    labels: Iterable[str] = (),
) -> list[LivePrecision]:
    """Each label's live precision from its (agreed, decided) counts, with the two-sided
    Wilson interval at ``confidence``; ``labels`` with no samples are listed too (0 of 0,
    interval (0, 1)). Sorted by label."""
    result = []
    for label in sorted(set(counts) | set(labels)):
        agreed, decided = counts.get(label, (0, 0))
        lower, upper = wilson_interval(agreed, decided, confidence)
        result.append(LivePrecision(label, decided, agreed, lower, upper))
    return result


class QualitySamples:
    """Reads decided quality samples from review_item."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def counts(self, *, since: datetime) -> dict[str, tuple[int, int]]:
        """(agreed, decided) per routed label, over samples of routings since ``since``."""
        agreed = func.count().filter(ReviewItem.decided_label == ReviewItem.predicted_label)
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(ReviewItem.predicted_label, agreed, func.count())
                    .where(
                        ReviewItem.reason == ReviewReason.QUALITY_SAMPLE.value,
                        ReviewItem.status == "decided",
                        ReviewItem.predicted_label.is_not(None),
                        # The sample opened with its routing: the window is the routings'.
                        ReviewItem.created_at >= since,
                    )
                    .group_by(ReviewItem.predicted_label)
                )
            ).all()
        return {str(label): (int(a), int(n)) for label, a, n in rows}

    async def live_precision(
        self,
        *,
        window: timedelta,
        confidence: float,
        labels: Iterable[str] = (),
        now: datetime | None = None,
    ) -> list[LivePrecision]:
        """Each label's live precision over the routings of the last ``window``."""
        counts = await self.counts(since=(now or utcnow()) - window)
        return live_precision(counts, confidence=confidence, labels=labels)
