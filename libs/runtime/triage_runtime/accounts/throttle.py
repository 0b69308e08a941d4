"""How long a sign-in attempt must wait: exponential back-off per key, without lockout (no I/O).

Failures are counted per key (a user name from one address, or a browser that signed in as
that user before) and, as a ceiling far above honest use, per user name and per address.
Below ``free`` failures nothing waits; after that each attempt waits ``base * 2**extra``
(at most ``cap``) from the last failure. Nothing is locked for good: the wait only grows
with more failures, and a browser that signed in before is held to its own count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Backoff:
    """Free failures, then a wait that doubles with each further failure, up to a cap."""

    free: int
    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=15)

    def wait(self, failures: int, last_failure: datetime | None, now: datetime) -> timedelta:
        """How much longer the next attempt must wait (zero: it may go ahead now)."""
        if failures < self.free or last_failure is None:
            return timedelta(0)
        # The exponent is bounded so that a huge count cannot overflow; the cap decides.
        delay: timedelta = min(self.base * 2 ** min(failures - self.free, 40), self.cap)
        return max(last_failure + delay - now, timedelta(0))


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    """The back-offs of sign-in, and the window their failures are counted in."""

    window: timedelta = timedelta(hours=1)
    # A user name from one address, and a browser that signed in as that user before.
    per_key: Backoff = field(default_factory=lambda: Backoff(free=5))
    # Ceilings far above an office's honest use, for browsers not known for the user name.
    per_user: Backoff = field(default_factory=lambda: Backoff(free=50))
    per_address: Backoff = field(default_factory=lambda: Backoff(free=200))
    # How long a browser stays known after its last sign-in.
    device_days: int = 90


def friendly_wait(wait: timedelta) -> str:
    """A wait as a person reads it: "4 seconds", "1 minute", "15 minutes"."""
    seconds = max(1, int(-(-wait.total_seconds() // 1)))
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
