"""IMAP connector: reads new mail incrementally by UID, one task per mailbox.

The cursor (UIDVALIDITY, last UID) lives in PostgreSQL and advances only after a message's
documents are durable, so a restart re-reads at most the message in flight. When the server
changes a mailbox's UIDVALIDITY, every message is read again; documents are identified by
the message's bytes, so nothing becomes a second document. IDLE is used where offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from typing import Any

from imapclient import IMAPClient

from triage_contracts import ErrorClass, Source, SourceKind
from triage_ingest.intake import Intake
from triage_ingest.metrics import CONNECTOR_ITEMS
from triage_ingest.settings import MAX_DOCUMENT_BYTES, ImapAccount, PostProcess
from triage_ingest.store import IngestStore

log = logging.getLogger(__name__)

TRIAGED_FLAG = b"$Triaged"
FETCH_BATCH = 20
STOP_TIMEOUT_SECONDS = 10.0


class ImapConnector:
    """Reads the configured mailboxes of one account."""

    def __init__(
        self,
        intake: Intake,
        store: IngestStore,
        account: ImapAccount,
        *,
        max_bytes: int = MAX_DOCUMENT_BYTES,
    ) -> None:
        self._intake = intake
        self._store = store
        self._account = account
        self._max_bytes = max_bytes
        self._source = Source(kind=SourceKind.IMAP, name=account.name)
        self._stopping = threading.Event()
        self._stop_requested = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

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
        if account.starttls and not account.tls:
            client.starttls(context)
        client.login(account.username, account.password.get_secret_value())
        return client

    async def _run(self, mailbox: str) -> None:
        while not self._stopping.is_set():
            client: IMAPClient | None = None
            try:
                client = await asyncio.to_thread(self._connect)
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
            wanted = await self._within_limit(client, mailbox, batch)
            fetched: dict[int, dict[bytes, Any]] = (
                await asyncio.to_thread(client.fetch, wanted, ["BODY.PEEK[]"]) if wanted else {}
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
                )
                CONNECTOR_ITEMS.labels("imap", "too_large").inc()
        return [uid for uid in uids if uid not in over]

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
