"""IMAP connector: reads new mail incrementally by UID, one task per mailbox.

The cursor (UIDVALIDITY, last UID) lives in PostgreSQL and advances only after a message's
documents are durable, so a restart re-reads at most the message in flight. When the server
changes a mailbox's UIDVALIDITY, every message is looked at again, by its Message-ID and size
first: one whose documents are known is not downloaded; the rest are, and (identified by
their bytes, or Message-ID and parts) none becomes a second document. IDLE is used where
offered.

A message whose intake fails (or crashes the process) ``max_attempts`` times is
dead-lettered, its attempts counted in PostgreSQL, and the mailbox moves on; a move to a
missing folder creates it, or else flags the message. Each mailbox's health (``ImapHealth``)
shows in ``/readyz`` and as gauges.

Login is by password or OAuth2 (``oauth.py``); a refused login is retried after a growing wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from triage_contracts import ErrorClass, Source, SourceKind
from triage_ingest import domain
from triage_ingest.imap_health import ImapHealth
from triage_ingest.intake import Intake
from triage_ingest.mailrules import DEFAULT_RULE, MailRule, PostProcess
from triage_ingest.metrics import CONNECTOR_ITEMS
from triage_ingest.oauth import AccessTokens, TokenRefusedError
from triage_ingest.settings import MAX_DOCUMENT_BYTES, ImapAccount, ImapAuth, OAuthMechanism
from triage_ingest.store import IngestStore
from triage_text.email.parse import EMAIL_MEDIA_TYPE, parse_email

log = logging.getLogger(__name__)

TRIAGED_FLAG = b"$Triaged"
FETCH_BATCH = 20
HEADER_BATCH = 500
STOP_TIMEOUT_SECONDS = 10.0
# Failures of a dependency, not of the message: they do not count towards its attempts.
# (OSError covers connection resets and timeouts and the local blob store's disk.)
DEPENDENCY_FAILURES = (OperationalError, InterfaceError, KafkaError, OSError)


class MailboxError(Exception):
    """The server would not open a mailbox (SELECT refused)."""


class MessageIntakeError(Exception):
    """Intake failed for one message (counted where it happened); it is tried again later."""


def failure_outcome(exc: BaseException) -> str:
    """The connector-items outcome a failed pass over a mailbox counts as."""
    if isinstance(exc, LoginError):
        return "auth_error"
    if isinstance(exc, MailboxError):
        return "mailbox_error"
    if isinstance(exc, MessageIntakeError):
        return "intake_error"
    if isinstance(exc, DBAPIError | KafkaError):
        return "dependency_error"
    return "connection_error"


def describe(exc: BaseException) -> str:
    """One line saying what went wrong, for health detail and attempt records."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


class LoginRefusedError(Exception):
    """The server refused the login, or no OAuth2 access token could be had."""


class AuthBackoff:
    """Waits after refused logins: doubling from the first wait up to a cap, reset on success."""

    def __init__(self, first: float, cap: float) -> None:
        self._first = first
        self._cap = max(cap, first)
        self._next = first

    def failed(self) -> float:
        """The wait before the next login attempt."""
        wait = self._next
        self._next = min(self._next * 2, self._cap)
        return wait

    def succeeded(self) -> None:
        """A login went through: the next refusal waits the first wait again."""
        self._next = self._first


class ImapConnector:
    """Reads the configured mailboxes of one account."""

    def __init__(
        self,
        intake: Intake,
        store: IngestStore,
        account: ImapAccount,
        health: ImapHealth | None = None,
        *,
        max_bytes: int = MAX_DOCUMENT_BYTES,
    ) -> None:
        self._intake = intake
        self._store = store
        self._account = account
        self._health = health or ImapHealth()
        for mailbox in account.mailboxes:
            self._health.watch(account.name, mailbox)
        self._max_bytes = max_bytes
        self._source = Source(kind=SourceKind.IMAP, name=account.name)
        self._stopping = threading.Event()
        self._stop_requested = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._tokens = AccessTokens(account.oauth2) if account.oauth2 is not None else None

    async def start(self) -> None:
        """Start one reader per mailbox."""
        self._stopping.clear()
        self._stop_requested = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._run(mailbox), name=f"imap-{self._account.name}-{mailbox}")
            for mailbox in self._account.mailboxes
        ]

    async def stop(self) -> None:
        """Stop the readers; a message in flight is finished or re-read after restart."""
        # Ask, then wait: the IMAP client is not thread-safe, so a reader must leave IDLE
        # (within a second) and log out itself; cancelling it would let a logout race the
        # thread still in IDLE on the same connection.
        self._stopping.set()
        self._stop_requested.set()
        done, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SECONDS)
        for task in pending:
            task.cancel()
        for task in (*done, *pending):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _connect(self) -> IMAPClient:
        account = self._account
        context = ssl.create_default_context(
            cafile=str(account.ca_file) if account.ca_file else None
        )
        client = IMAPClient(account.host, port=account.port, ssl=account.tls, ssl_context=context)
        try:
            if account.starttls and not account.tls:
                client.starttls(context)
            self._login(client)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        return client

    def _login(self, client: IMAPClient) -> None:
        account = self._account
        if account.auth is ImapAuth.PASSWORD:
            assert account.password is not None  # settings validation
            try:
                client.login(account.username, account.password.get_secret_value())
            except LoginError as error:
                raise LoginRefusedError(str(error)) from error
            return
        assert self._tokens is not None  # settings validation
        try:
            token = self._tokens.current()
            try:
                self._oauth_login(client, token)
            except LoginError:
                # The server may know better than expires_in (a revoked token): renew once.
                self._oauth_login(client, self._tokens.renew(token))
        except (LoginError, TokenRefusedError) as error:
            raise LoginRefusedError(str(error)) from error

    def _oauth_login(self, client: IMAPClient, token: str) -> None:
        assert self._account.oauth2 is not None
        if self._account.oauth2.mechanism is OAuthMechanism.OAUTHBEARER:
            client.oauthbearer_login(self._account.username, token)
        else:
            client.oauth2_login(self._account.username, token)

    async def _run(self, mailbox: str) -> None:
        account = self._account
        backoff = AuthBackoff(account.auth_retry_seconds, account.auth_retry_max_seconds)
        while not self._stopping.is_set():
            client: IMAPClient | None = None
            try:
                client = await self._log_in(mailbox, backoff)
                if client is None:
                    continue
                while not self._stopping.is_set():
                    await self.poll_mailbox(client, mailbox)
                    await self._wait_for_mail(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outcome = failure_outcome(exc)
                log.exception(
                    "imap connector error; reconnecting",
                    extra={"account": self._account.name, "mailbox": mailbox, "outcome": outcome},
                )
                if not isinstance(exc, MessageIntakeError):  # counted where it happened
                    CONNECTOR_ITEMS.labels("imap", outcome).inc()
                self._health.failed(self._account.name, mailbox, describe(exc))
                await self._pause(self._account.poll_seconds)
            finally:
                if client is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(client.logout)

    async def _log_in(self, mailbox: str, backoff: AuthBackoff) -> IMAPClient | None:
        """A logged-in client, or None after waiting out a refused login."""
        try:
            client = await asyncio.to_thread(self._connect)
        except LoginRefusedError as error:
            wait = backoff.failed()
            log.warning(
                "imap login refused; next attempt in %g s: %s",
                wait,
                error,
                extra={"account": self._account.name, "mailbox": mailbox, "retry_seconds": wait},
            )
            CONNECTOR_ITEMS.labels("imap", "auth_error").inc()
            self._health.failed(self._account.name, mailbox, f"login refused: {error}"[:500])
            await self._pause(wait)
            return None
        backoff.succeeded()
        return client

    async def _wait_for_mail(self, client: IMAPClient) -> None:
        account = self._account
        if account.idle and b"IDLE" in client.capabilities():
            await asyncio.to_thread(self._idle, client)
        else:
            await self._pause(account.poll_seconds)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when stop() is called."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), timeout=seconds)

    def _idle(self, client: IMAPClient) -> None:
        # Short idle_check slices keep stop() prompt; the server is told once per renewal.
        client.idle()
        try:
            waited = 0.0
            while waited < self._account.idle_seconds and not self._stopping.is_set():
                if client.idle_check(timeout=1):
                    return
                waited += 1
        finally:
            client.idle_done()

    async def poll_mailbox(self, client: IMAPClient, mailbox: str) -> int:
        """Ingest every message above the cursor; return how many were downloaded."""
        account = self._account
        uidvalidity = await self._select(client, mailbox)
        cursor = await self._store.imap_cursor(account.name, mailbox)
        last_uid = 0
        reset = cursor is not None and cursor[0] != uidvalidity
        if cursor is not None and not reset:
            last_uid = cursor[1]
        elif reset:
            log.warning(
                "UIDVALIDITY changed; reading the mailbox again (known mail is skipped)",
                extra={"account": account.name, "mailbox": mailbox},
            )
            CONNECTOR_ITEMS.labels("imap", "uidvalidity_reset").inc()
        found: list[int] = await asyncio.to_thread(client.search, ["UID", f"{last_uid + 1}:*"])
        # "n:*" always matches the last message, even when it is below n.
        uids = sorted(uid for uid in found if uid > last_uid)
        known = await self._known_uids(client, uids) if reset else set()
        remaining = len(uids)
        self._health.backlog(account.name, mailbox, remaining)
        downloaded = 0
        for start in range(0, len(uids), FETCH_BATCH):
            batch = uids[start : start + FETCH_BATCH]
            wanted = await self._within_limit(
                client, mailbox, [uid for uid in batch if uid not in known]
            )
            fetched: dict[int, dict[bytes, Any]] = (
                await asyncio.to_thread(client.fetch, wanted, ["BODY.PEEK[]", "INTERNALDATE"])
                if wanted
                else {}
            )
            for uid in batch:
                raw = fetched.get(uid, {}).get(b"BODY[]")
                if raw is not None:
                    await self._take(
                        client,
                        mailbox,
                        uidvalidity=uidvalidity,
                        uid=uid,
                        raw=raw,
                        arrived=_internal_date(fetched[uid].get(b"INTERNALDATE")),
                    )
                    downloaded += 1
                elif uid in known:
                    CONNECTOR_ITEMS.labels("imap", "known_skipped").inc()
                    # Not read again, so no rule is chosen: the account's post-processing.
                    await self._finish(client, mailbox, uid, DEFAULT_RULE)
                await self._store.save_imap_cursor(
                    account.name, mailbox, uidvalidity=uidvalidity, last_uid=uid
                )
                remaining -= 1
                self._health.backlog(account.name, mailbox, remaining)
        self._health.succeeded(account.name, mailbox)
        if downloaded:
            log.info(
                "imap messages ingested",
                extra={"account": account.name, "mailbox": mailbox, "count": downloaded},
            )
        return downloaded

    async def _known_uids(self, client: IMAPClient, uids: list[int]) -> set[int]:
        """The messages among ``uids`` whose documents are recorded, told by their Message-ID
        (read as the parser reads it) and size without downloading them; a message without
        a Message-ID is never known this way."""
        known: set[int] = set()
        for start in range(0, len(uids), HEADER_BATCH):
            batch = uids[start : start + HEADER_BATCH]
            fetched: dict[int, dict[bytes, Any]] = await asyncio.to_thread(
                client.fetch, batch, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]", "RFC822.SIZE"]
            )
            headers: dict[int, tuple[bytes, int]] = {}
            for uid, data in fetched.items():
                # The answer's key is the section as the server spells it back.
                header = next(
                    (v for k, v in data.items() if k.startswith(b"BODY[HEADER.FIELDS")), None
                )
                size = data.get(b"RFC822.SIZE")
                if header is not None and size is not None:
                    headers[uid] = (bytes(header), int(size))
            ids = await asyncio.to_thread(_message_ids, headers)
            pairs = {uid: (mid, headers[uid][1]) for uid, mid in ids.items() if mid}
            seen = await self._store.emails_seen(
                domain.email_scope(self._source), set(pairs.values())
            )
            known.update(uid for uid, pair in pairs.items() if pair in seen)
        return known

    async def _select(self, client: IMAPClient, mailbox: str) -> int:
        """Open a mailbox; return its UIDVALIDITY. A refusal is a MailboxError."""
        try:
            selected: dict[bytes, Any] = await asyncio.to_thread(client.select_folder, mailbox)
        except IMAPClientAbortError:
            raise
        except IMAPClientError as exc:
            raise MailboxError(f"cannot open mailbox {mailbox!r}: {describe(exc)}") from exc
        return int(selected[b"UIDVALIDITY"])

    async def _take(
        self,
        client: IMAPClient,
        mailbox: str,
        *,
        uidvalidity: int,
        uid: int,
        raw: bytes,
        arrived: datetime | None = None,
    ) -> None:
        """Hand one message to intake, or dead-letter it once it has failed ``max_attempts``
        times; then post-process what was taken. A failure that is retried raises
        MessageIntakeError."""
        name, limit = self._account.name, self._account.max_attempts
        where = {"uidvalidity": uidvalidity, "uid": uid}
        earlier, last_error = await self._store.begin_imap_attempt(name, mailbox, **where)
        if earlier >= limit:  # the earlier ones crashed before they could give up
            await self._dead_letter(
                mailbox, uid, bytes(raw), tries=earlier, error=last_error or "the process stopped"
            )
            return
        try:
            accepted = await self._intake.accept_email(
                bytes(raw),
                source=self._source,
                mailbox=mailbox,
                rules=self._account.rules,
                arrived=arrived,
            )
        except Exception as exc:
            error, counts = describe(exc), not isinstance(exc, DEPENDENCY_FAILURES)
            await self._store.fail_imap_attempt(name, mailbox, **where, error=error, counts=counts)
            CONNECTOR_ITEMS.labels("imap", "intake_error").inc()
            if counts and earlier + 1 >= limit:
                await self._dead_letter(mailbox, uid, bytes(raw), tries=earlier + 1, error=error)
                return
            raise MessageIntakeError(f"UID {uid}: {error}") from exc
        new = any(document.created for document in accepted.documents)
        taken = "ingested" if new else "known" if accepted.documents else "skipped"
        CONNECTOR_ITEMS.labels("imap", taken).inc()
        await self._finish(client, mailbox, uid, accepted.rule)

    async def _finish(self, client: IMAPClient, mailbox: str, uid: int, rule: MailRule) -> None:
        """Post-process a taken message as its mail rule (else the account) says; a move that
        fails flags it instead and is counted and shown in the mailbox's health."""
        if problem := await asyncio.to_thread(self._post_process, client, uid, rule):
            CONNECTOR_ITEMS.labels("imap", "post_process_error").inc()
            log.warning(
                "imap post-processing failed; the message was flagged instead",
                extra={
                    "account": self._account.name,
                    "mailbox": mailbox,
                    "uid": uid,
                    "error": problem,
                },
            )
            self._health.failed(self._account.name, mailbox, problem)

    async def _dead_letter(
        self, mailbox: str, uid: int, raw: bytes, *, tries: int, error: str
    ) -> None:
        """Give up on a message: dead-letter it with the raw kept; it stays in the mailbox."""
        reason = f"IMAP {mailbox} UID {uid}: intake failed {tries} times; last: {error}"
        await self._intake.dead_letter(
            source=self._source,
            raw_sha256=await self._intake.store_bytes(raw),
            raw_size=len(raw),
            media_type=EMAIL_MEDIA_TYPE,
            error_class=ErrorClass.CONNECTOR_ERROR,
            reason=reason,
            mailbox=mailbox,
        )
        CONNECTOR_ITEMS.labels("imap", "dead_lettered").inc()
        self._health.failed(self._account.name, mailbox, reason)

    async def _within_limit(self, client: IMAPClient, mailbox: str, uids: list[int]) -> list[int]:
        """The UIDs whose size is within the limit; the others are dead-lettered unread.

        An oversize message's dead letter keeps only its header (who sent it, when, what);
        the message stays in the mailbox, untouched, and the cursor moves past it.
        """
        sizes: dict[int, dict[bytes, Any]] = await asyncio.to_thread(
            client.fetch, uids, ["RFC822.SIZE"]
        )
        over = {
            uid: size
            for uid in uids
            if (size := int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))) > self._max_bytes
        }
        if over:
            headers: dict[int, dict[bytes, Any]] = await asyncio.to_thread(
                client.fetch, list(over), ["BODY.PEEK[HEADER]"]
            )
            for uid, size in over.items():
                header = bytes(headers.get(uid, {}).get(b"BODY[HEADER]", b""))
                await self._intake.dead_letter(
                    source=self._source,
                    raw_sha256=await self._intake.store_bytes(header),
                    raw_size=len(header),
                    media_type="text/rfc822-headers",
                    error_class=ErrorClass.OVERSIZE,
                    reason=f"message UID {uid} in {mailbox} is {size} bytes, over the "
                    f"{self._max_bytes}-byte limit; left on the server unread (header kept)",
                    mailbox=mailbox,
                )
                CONNECTOR_ITEMS.labels("imap", "too_large").inc()
        return [uid for uid in uids if uid not in over]

    def _post_process(self, client: IMAPClient, uid: int, rule: MailRule) -> str | None:
        """Flag, move or delete a taken message, as its mail rule (else the account) says;
        return why a move failed (the message is then flagged)."""
        action = rule.post_process or self._account.post_process
        target = rule.move_to or self._account.move_to
        if action is PostProcess.FLAG:
            client.add_flags([uid], [TRIAGED_FLAG])
        elif action is PostProcess.MOVE:
            try:
                _move(client, uid, target)
            except IMAPClientAbortError:
                raise
            except IMAPClientError as exc:
                return _move_to_created_folder(client, uid, target, exc)
        elif action is PostProcess.DELETE:
            client.delete_messages([uid])
            client.uid_expunge([uid])
        return None


def _move(client: IMAPClient, uid: int, target: str) -> None:
    if client.has_capability("MOVE"):
        client.move([uid], target)
    else:
        client.copy([uid], target)
        client.delete_messages([uid])
        client.uid_expunge([uid])


def _move_to_created_folder(
    client: IMAPClient, uid: int, target: str, refused: IMAPClientError
) -> str | None:
    """A move was refused: create a missing target and move again, else flag the message
    and return why, so the mailbox moves on."""
    try:
        if client.folder_exists(target):
            raise refused
        client.create_folder(target)
        log.info("created the imap move_to folder", extra={"folder": target})
        _move(client, uid, target)
    except IMAPClientAbortError:
        raise
    except IMAPClientError as exc:
        client.add_flags([uid], [TRIAGED_FLAG])
        return f"cannot move to {target!r}: {describe(exc)}"
    return None


def _internal_date(value: object) -> datetime | None:
    """IMAP INTERNALDATE (when the server received the mail), timezone-aware, if given."""
    if not isinstance(value, datetime):
        return None
    # imapclient gives local naive times unless told otherwise; naive means local here.
    return value if value.tzinfo is not None else value.astimezone(UTC)


def _message_ids(headers: dict[int, tuple[bytes, int]]) -> dict[int, str | None]:
    """Each message's Message-ID, read from its header as the email parser reads it."""
    return {uid: parse_email(header).message_id for uid, (header, _) in headers.items()}
