"""The dashboard's per-hour chart: every one of the last 24 hours, zero where nobody decided."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

from triage_review_ui.queries import every_hour, last_hours

NOW = datetime(2026, 12, 6, 16, 41, 7, tzinfo=UTC)


def test_the_last_24_hours_end_with_the_current_one() -> None:
    hours = last_hours(NOW)
    assert len(hours) == 24
    assert hours[-1] == datetime(2026, 12, 6, 16, tzinfo=UTC)
    assert hours[0] == datetime(2026, 12, 5, 17, tzinfo=UTC)
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(hours))


def test_hours_without_decisions_are_zero_and_counts_land_in_their_hour() -> None:
    hours = last_hours(NOW)
    # PostgreSQL may hand back the same instant in another zone.
    plus_one = timezone(timedelta(hours=1))
    counts = {
        datetime(2026, 12, 6, 15, tzinfo=UTC): 3,
        datetime(2026, 12, 6, 11, tzinfo=plus_one): 2,
    }
    shown = dict(every_hour(hours, counts))
    assert shown[datetime(2026, 12, 6, 15, tzinfo=UTC)] == 3
    assert shown[datetime(2026, 12, 6, 10, tzinfo=UTC)] == 2
    assert sum(shown.values()) == 5
    assert sum(1 for n in shown.values() if n == 0) == 22
