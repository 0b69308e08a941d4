"""SMTP receiver: mail sent to an allowed recipient becomes documents, like IMAP mail.

Answers follow RFC 5321: 550 for recipients not on the allowlist, 552 for messages over the
size limit (aiosmtpd enforces it while the data streams), 451 when the message could not be
stored or published (the sender retries later), 250 once the documents are durable.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from triage_contracts import Source, SourceKind
from triage_ingest.intake import Intake
from triage_ingest.metrics import CONNECTOR_ITEMS
from triage_ingest.settings import Settings

log = logging.getLogger(__name__)


def recipient_allowed(address: str, allowed: list[str]) -> bool:
    """Say whether ``address`` matches an allowed address or ``@domain`` entry (any case)."""
    address = address.strip().lower()
    for entry in (a.strip().lower() for a in allowed):
        if entry.startswith("@") and address.endswith(entry):
            return True
        if address == entry:
            return True
    return False


class _Handler:
    def __init__(self, intake: Intake, settings: Settings) -> None:
        self._intake = intake
        self._allowed = settings.smtp_allowed_recipients
        self._source = Source(kind=SourceKind.SMTP, name=settings.smtp_source_name)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        del server, session, options
        if not recipient_allowed(address, self._allowed):
            CONNECTOR_ITEMS.labels("smtp", "recipient_refused").inc()
            return "550 5.1.1 Recipient not accepted here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        del server, session
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="surrogateescape")
        try:
            result = await self._intake.accept_email(raw, source=self._source)
        except Exception:
            # Storage or broker trouble: a 4xx makes the sending server try again later.
            log.exception("could not ingest an SMTP message; asked the sender to retry")
            CONNECTOR_ITEMS.labels("smtp", "deferred").inc()
            return "451 4.3.0 Temporary failure, please try again later"
        CONNECTOR_ITEMS.labels("smtp", "ingested").inc()
        return f"250 2.0.0 Accepted as {len(result.documents)} document(s)"


class SmtpReceiver:
    """An aiosmtpd server on the service's own event loop."""

    def __init__(self, intake: Intake, settings: Settings) -> None:
        self._settings = settings
        self._handler = _Handler(intake, settings)
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        """Listen for SMTP connections."""
        settings = self._settings
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(
                self._handler,
                data_size_limit=settings.smtp_max_message_bytes,
                hostname="triage-ingest",
                ident="Triage ingest",
            ),
            host=settings.smtp_host,
            port=settings.smtp_port,
        )
        log.info("smtp receiver listening", extra={"port": settings.smtp_port})

    async def stop(self) -> None:
        """Stop accepting connections and close the listener."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
