"""The SMTP, IMAP and drop-folder connectors the settings turn on, started and stopped together."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Protocol

from triage_ingest.dropfolder import DropFolder
from triage_ingest.imap import ImapConnector
from triage_ingest.imap_health import ImapHealth
from triage_ingest.intake import Intake
from triage_ingest.settings import Settings
from triage_ingest.smtp import SmtpReceiver
from triage_ingest.store import IngestStore


class Connector(Protocol):
    """Something that brings documents in while it runs."""

    async def start(self) -> None:
        """Begin taking input."""

    async def stop(self) -> None:
        """Stop taking input; what is in flight finishes or is retried after a restart."""


def connectors_for(
    settings: Settings,
    intake: Intake,
    store: IngestStore,
    *,
    imap_health: ImapHealth | None = None,
) -> list[Connector]:
    """The connectors ``settings`` turn on, in start order: SMTP, each IMAP account, drop folder;
    the IMAP ones report their mailboxes' health to ``imap_health``."""
    found: list[Connector] = []
    if settings.smtp_enabled:
        found.append(SmtpReceiver(intake, settings))
    found.extend(
        ImapConnector(intake, store, account, imap_health, max_bytes=settings.max_document_bytes)
        for account in settings.imap_accounts
    )
    if settings.drop_dir is not None:
        found.append(DropFolder(intake, settings))
    return found


@asynccontextmanager
async def running(connectors: Iterable[Connector]) -> AsyncIterator[None]:
    """Start the connectors in turn; stop those started, last first, on exit or a failed start."""
    async with AsyncExitStack() as stack:
        for connector in connectors:
            await connector.start()
            stack.push_async_callback(connector.stop)
        yield
