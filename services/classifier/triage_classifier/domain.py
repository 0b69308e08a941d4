"""What the classifier decides itself: when a set-aside document is tried again, and which
models' scores are watched for drift.

Scoring is the shared pipeline's (``triage_ml.scoring``); which model scores which partition
is the routing policy's (``triage_runtime.routing``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from triage_contracts import ModelRole

DRIFT_ROLES = frozenset({ModelRole.CHAMPION, ModelRole.CANARY})
"""The roles whose scores count into a drift window: the trained models whose scores route."""


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """The next attempt of a set-aside document and how long to wait for it."""

    attempt: int
    delay_seconds: float


def next_retry(
    attempts_so_far: int,
    *,
    max_attempts: int,
    backoff_seconds: float,
    backoff_max_seconds: float,
) -> RetryPlan | None:
    """The next attempt after ``attempts_so_far``, the delay doubling each time up to its
    limit; None once ``max_attempts`` are used up (the document is then a dead letter)."""
    attempt = attempts_so_far + 1
    if attempt > max_attempts:
        return None
    delay = min(backoff_max_seconds, backoff_seconds * 2 ** (attempt - 1))
    return RetryPlan(attempt, delay)


def retry_wait(retry_at_ms: Iterable[int], *, now: float, longest_seconds: float) -> float:
    """Seconds until the last of a retry batch's documents is due (their ``retry-at`` headers,
    epoch milliseconds), never more than ``longest_seconds``; zero or less when all are due."""
    due = max(retry_at_ms, default=0)
    return min(due / 1000 - now, longest_seconds)


def retry_poll_ms(*, backoff_seconds: float, documents_poll_ms: int) -> int:
    """How long a poll of the retry topic waits: a quarter of the first retry delay, between
    the documents topic's poll wait and half a second.

    A set-aside document is due no sooner than that delay, so polling the (usually empty)
    retry topic as often as the documents topic would only cost CPU.
    """
    quarter = int(backoff_seconds * 250)
    return max(documents_poll_ms, min(quarter, 500))
