"""Per-mailbox health of the IMAP connectors: last success, last error and backlog, for
``/readyz`` and as gauges."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from triage_contracts import utcnow
from triage_ingest.metrics import IMAP_BACKLOG, IMAP_FAILING, IMAP_LAST_ERROR, IMAP_LAST_SUCCESS


@dataclass(slots=True)
class MailboxHealth:
    """What is known of one mailbox since the process started."""

    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    backlog: int | None = None

    @property
    def failing(self) -> bool:
        """The last thing that happened to the mailbox was an error (no success since)."""
        if self.last_error_at is None:
            return False
        return self.last_success_at is None or self.last_error_at > self.last_success_at


class ImapHealth:
    """The health of every IMAP mailbox of the process, by (account, mailbox)."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._mailboxes: dict[tuple[str, str], MailboxHealth] = {}

    def watch(self, account: str, mailbox: str) -> None:
        """Start showing a mailbox (its gauges from 0, so alerts see it before any pass)."""
        self._mailboxes.setdefault((account, mailbox), MailboxHealth())
        for gauge in (IMAP_LAST_SUCCESS, IMAP_LAST_ERROR, IMAP_FAILING, IMAP_BACKLOG):
            gauge.labels(account, mailbox)

    def succeeded(self, account: str, mailbox: str) -> None:
        """The mailbox was read through to its end."""
        health = self._of(account, mailbox)
        health.last_success_at = self._clock()
        IMAP_LAST_SUCCESS.labels(account, mailbox).set(health.last_success_at.timestamp())
        IMAP_FAILING.labels(account, mailbox).set(0)

    def failed(self, account: str, mailbox: str, error: str) -> None:
        """Something went wrong with the mailbox (a pass failed, or a message could not be
        moved or was dead-lettered); it is failing until its next success."""
        health = self._of(account, mailbox)
        health.last_error = error[:500]
        health.last_error_at = self._clock()
        IMAP_LAST_ERROR.labels(account, mailbox).set(health.last_error_at.timestamp())
        IMAP_FAILING.labels(account, mailbox).set(1)

    def backlog(self, account: str, mailbox: str, messages: int) -> None:
        """Messages above the cursor not yet taken."""
        self._of(account, mailbox).backlog = messages
        IMAP_BACKLOG.labels(account, mailbox).set(messages)

    def failing(self) -> list[str]:
        """``account/mailbox`` of every mailbox whose last pass failed."""
        return [f"{a}/{m}" for (a, m), health in self._mailboxes.items() if health.failing]

    def detail(self) -> dict[str, Any]:
        """Each mailbox's health, as ``/readyz`` shows it."""
        return {
            f"{account}/{mailbox}": {
                "status": "failing" if health.failing else "ok",
                "last_success_at": _iso(health.last_success_at),
                "last_error": health.last_error,
                "last_error_at": _iso(health.last_error_at),
                "backlog": health.backlog,
            }
            for (account, mailbox), health in sorted(self._mailboxes.items())
        }

    def _of(self, account: str, mailbox: str) -> MailboxHealth:
        if (account, mailbox) not in self._mailboxes:
            self.watch(account, mailbox)
        return self._mailboxes[(account, mailbox)]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
