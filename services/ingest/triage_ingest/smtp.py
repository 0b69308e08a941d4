"""SMTP receiver: mail sent to an allowed recipient becomes documents, like IMAP mail.

Answers follow RFC 5321: 550 for recipients not on the allowlist, 552 for messages over
``max_document_bytes`` (aiosmtpd enforces it while the data streams), 451 when the message
could not be stored or published (the sender retries later), 250 once the documents are
durable. Every refusal is logged and counted. See docs/ingest.md, "SMTP".
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import ssl
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthenticatorType, AuthResult, Envelope, LoginPassword, Session

from triage_contracts import Source, SourceKind
from triage_contracts.events import MAX_METADATA_VALUE
from triage_ingest.intake import Intake
from triage_ingest.metrics import CONNECTOR_ITEMS
from triage_ingest.settings import Settings

log = logging.getLogger(__name__)

TOO_LARGE = "552 5.3.4 Message too big for this receiver"
# Metadata keys of a received mail's documents.
ENVELOPE_TO = "envelope_to"
AUTHENTICATION_RESULTS = "authentication_results"
# A refusal's reply code -> the connector-items outcome it is counted as.
_OUTCOMES = {
    "451": "deferred",
    "530": "auth_required",
    "535": "auth_failed",
    "550": "recipient_refused",
    "552": "too_large",
}
# A line start (after a bare LF) that the client dot-stuffed; CRLF lines aiosmtpd unstuffs.
_STUFFED_AFTER_BARE_LF = re.compile(rb"(?<!\r)\n\.")


def recipient_allowed(address: str, allowed: list[str]) -> bool:
    """Say whether ``address`` matches an allowed address or ``@domain`` entry (any case)."""
    address = address.strip().lower()
    for entry in (a.strip().lower() for a in allowed):
        if entry.startswith("@") and address.endswith(entry):
            return True
        if address == entry:
            return True
    return False


def refusal_outcome(reply: str) -> str | None:
    """The outcome a reply is counted as when it refuses or defers something, else None."""
    code = reply[:3]
    if not code.startswith(("4", "5")):
        return None
    if code in _OUTCOMES:
        return _OUTCOMES[code]
    if code in ("500", "501", "502", "503", "504"):
        return "protocol_error"
    return "deferred" if code.startswith("4") else "refused"


def unstuff_bare_lf_lines(data: bytes) -> bytes:
    """Undo the dot-stuffing a client did on lines it ended with a bare LF.

    A client that sends bare LF (smtplib with bytes, sendmail -t) treats LF as the line end
    and stuffs a dot there; aiosmtpd unstuffs only lines after CRLF.
    """
    return _STUFFED_AFTER_BARE_LF.sub(b"\n", data)


def mail_metadata(
    recipients: list[str], raw: bytes, *, authserv_id: str | None = None
) -> dict[str, str]:
    """The envelope recipients and the receiving server's Authentication-Results header.

    That header is the top-most one (the last hop adds its own on top), or with
    ``authserv_id`` the top-most one that server wrote (RFC 8601: trust only your own).
    """
    metadata = {ENVELOPE_TO: _cut(", ".join(recipients))}
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    for value in headers.get_all("Authentication-Results") or []:
        text = " ".join(str(value).split())
        if authserv_id is None or _authserv_id(text) == authserv_id.lower():
            metadata[AUTHENTICATION_RESULTS] = _cut(text)
            break
    return metadata


def _authserv_id(results: str) -> str:
    return results.split(";", 1)[0].strip().split(" ", 1)[0].lower()


def _cut(value: str) -> str:
    return value if len(value) <= MAX_METADATA_VALUE else value[: MAX_METADATA_VALUE - 1] + "…"


def _authenticator(username: str, password: str) -> AuthenticatorType:
    expected = (username.encode(), password.encode())

    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        del server, session, envelope, mechanism
        ok = isinstance(auth_data, LoginPassword)
        # Both compared, always, so the time taken does not tell which one was wrong.
        ok &= hmac.compare_digest(getattr(auth_data, "login", b""), expected[0])
        ok &= hmac.compare_digest(getattr(auth_data, "password", b""), expected[1])
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return check


class _Session(SMTP):
    """aiosmtpd's SMTP session, lenient about bare LF, logging and counting every refusal."""

    def __init__(self, handler: _Handler, *, max_bytes: int, **kwargs: Any) -> None:
        # aiosmtpd ends a DATA line only at CRLF, so a mail with bare LF line ends is one long
        # line to it, and over its 1,001-byte line limit it was refused ("500 Line too long").
        # RFC 5321 4.5.3.1.6 is the least a receiver must take; lines here may be as long as
        # a message may be, so only a message over the limit overruns a line (see push).
        # Set before SMTP.__init__, which sizes its stream reader by it.
        self.line_length_limit = max_bytes + len(b"\r\n")
        super().__init__(handler, data_size_limit=max_bytes, **kwargs)

    async def push(self, status: AnyStr) -> None:
        """Send a reply; refusals are logged and counted here, whoever made them."""
        reply = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        if reply.startswith("500 Line too long"):
            reply = TOO_LARGE
        outcome = refusal_outcome(reply)
        if outcome is not None:
            CONNECTOR_ITEMS.labels("smtp", outcome).inc()
            envelope = self.envelope
            log.warning(
                "smtp refused",
                extra={
                    "smtp_reply": reply[:200],
                    "outcome": outcome,
                    "peer": str(self.session.peer[0])
                    if self.session and self.session.peer
                    else None,
                    "mail_from": envelope.mail_from if envelope else None,
                    "recipients": len(envelope.rcpt_tos) if envelope else 0,
                },
            )
        await super().push(reply)


class _Handler:
    def __init__(self, intake: Intake, settings: Settings) -> None:
        self._intake = intake
        self._allowed = settings.smtp_allowed_recipients
        self._authserv_id = settings.smtp_authserv_id
        self._source = Source(kind=SourceKind.SMTP, name=settings.smtp_source_name)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        del server, session, options
        if not recipient_allowed(address, self._allowed):
            return "550 5.1.1 Recipient not accepted here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def _prepare(self, raw: bytes, recipients: list[str]) -> tuple[bytes, dict[str, str]]:
        # Off the event loop: a message may be 25 MiB, its header most of it.
        raw = unstuff_bare_lf_lines(raw)
        return raw, mail_metadata(recipients, raw, authserv_id=self._authserv_id)

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        del server, session
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="surrogateescape")
        raw, metadata = await asyncio.to_thread(self._prepare, raw, list(envelope.rcpt_tos))
        try:
            result = await self._intake.accept_email(raw, source=self._source, metadata=metadata)
        except Exception:
            # Storage or broker trouble: a 4xx makes the sending server try again later.
            log.exception("could not ingest an SMTP message; asked the sender to retry")
            return "451 4.3.0 Temporary failure, please try again later"
        CONNECTOR_ITEMS.labels("smtp", "ingested").inc()
        return f"250 2.0.0 Accepted as {len(result.documents)} document(s)"


class SmtpReceiver:
    """An aiosmtpd server on the service's own event loop."""

    def __init__(self, intake: Intake, settings: Settings) -> None:
        self._settings = settings
        self._handler = _Handler(intake, settings)
        self._server: asyncio.base_events.Server | None = None

    def _options(self) -> dict[str, Any]:
        settings = self._settings
        options: dict[str, Any] = {}
        if settings.smtp_tls_cert_file is not None and settings.smtp_tls_key_file is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(settings.smtp_tls_cert_file, settings.smtp_tls_key_file)
            options["tls_context"] = context
            options["require_starttls"] = settings.smtp_require_starttls
        if settings.smtp_auth_username is not None and settings.smtp_auth_password is not None:
            options["authenticator"] = _authenticator(
                settings.smtp_auth_username, settings.smtp_auth_password.get_secret_value()
            )
            options["auth_required"] = True
            options["auth_require_tls"] = not settings.smtp_auth_allow_plaintext
        return options

    async def start(self) -> None:
        """Listen for SMTP connections."""
        settings = self._settings
        options = self._options()  # a bad certificate fails here, at start
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Session(
                self._handler,
                max_bytes=settings.max_document_bytes,
                hostname="triage-ingest",
                ident="Triage ingest",
                **options,
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
