"""IMAP connector: reads new mail incrementally by UID, one task per mailbox.

The cursor (UIDVALIDITY, last UID) lives in PostgreSQL and advances only after a message's
documents are durable, so a restart re-reads at most the message in flight. When the server
changes a mailbox's UIDVALIDITY, every message is read again; documents are identified by
the message's bytes, so nothing becomes a second document. IDLE is used where offered.
Login is by password or OAuth2 (``oauth.py``); a refused login is retried after a growing wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from triage_contracts import Source, SourceKind
from triage_ingest.intake import Intake
from triage_ingest.metrics import CONNECTOR_ITEMS
from triage_ingest.oauth import AccessTokens, TokenRefusedError
from triage_ingest.settings import ImapAccount, ImapAuth, OAuthMechanism, PostProcess
from triage_ingest.store import IngestStore

log = logging.getLogger(__name__)

TRIAGED_FLAG = b"$Triaged"
FETCH_BATCH = 20
STOP_TIMEOUT_SECONDS = 10.0


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

    def __init__(self, intake: Intake, store: IngestStore, account: ImapAccount) -> None:
        self._intake = intake
        self._store = store
        self._account = account
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
            except Exception:
                log.exception(
                    "imap connector error; reconnecting",
                    extra={"account": self._account.name, "mailbox": mailbox},
                )
                CONNECTOR_ITEMS.labels("imap", "connection_error").inc()
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
        selected: dict[bytes, Any] = await asyncio.to_thread(client.select_folder, mailbox)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        cursor = await self._store.imap_cursor(account.name, mailbox)
        last_uid = 0
        if cursor is not None:
            if cursor[0] == uidvalidity:
                last_uid = cursor[1]
            else:
                log.warning(
                    "UIDVALIDITY changed; reading the mailbox again (documents deduplicate)",
                    extra={"account": account.name, "mailbox": mailbox},
                )
                CONNECTOR_ITEMS.labels("imap", "uidvalidity_reset").inc()
        found: list[int] = await asyncio.to_thread(client.search, ["UID", f"{last_uid + 1}:*"])
        # "n:*" always matches the last message, even when it is below n.
        uids = sorted(uid for uid in found if uid > last_uid)
        downloaded = 0
        for start in range(0, len(uids), FETCH_BATCH):
            batch = uids[start : start + FETCH_BATCH]
            fetched: dict[int, dict[bytes, Any]] = await asyncio.to_thread(
                client.fetch, batch, ["BODY.PEEK[]"]
            )
            for uid in batch:
                raw = fetched.get(uid, {}).get(b"BODY[]")
                if raw is not None:
                    await self._intake.accept_email(
                        bytes(raw), source=self._source, mailbox=mailbox
                    )
                    downloaded += 1
                    CONNECTOR_ITEMS.labels("imap", "ingested").inc()
                    await asyncio.to_thread(self._post_process, client, uid)
                await self._store.save_imap_cursor(
                    account.name, mailbox, uidvalidity=uidvalidity, last_uid=uid
                )
        if downloaded:
            log.info(
                "imap messages ingested",
                extra={"account": account.name, "mailbox": mailbox, "count": downloaded},
            )
        return downloaded

    def _post_process(self, client: IMAPClient, uid: int) -> None:
        action = self._account.post_process
        if action is PostProcess.FLAG:
            client.add_flags([uid], [TRIAGED_FLAG])
        elif action is PostProcess.MOVE:
            if client.has_capability("MOVE"):
                client.move([uid], self._account.move_to)
            else:
                client.copy([uid], self._account.move_to)
                client.delete_messages([uid])
                client.uid_expunge([uid])
