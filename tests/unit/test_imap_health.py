"""IMAP mailbox health as /readyz shows it, a move the server refuses, and what counts as a
message's failed attempt, without a server."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from fastapi import FastAPI
from fastapi.testclient import TestClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from pydantic import SecretStr
from sqlalchemy.exc import OperationalError

from triage_ingest.imap import (
    TRIAGED_FLAG,
    ImapConnector,
    MailboxError,
    MessageIntakeError,
    failure_outcome,
)
from triage_ingest.imap_health import ImapHealth
from triage_ingest.mailrules import DEFAULT_RULE, PostProcess
from triage_ingest.settings import ImapAccount
from triage_runtime.ops import ops_router


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _app(health: ImapHealth, *, ready: bool = True) -> TestClient:
    async def database() -> bool:
        return ready

    app = FastAPI()
    app.include_router(
        ops_router(
            service="ingest",
            checks={"database": database},
            detail=lambda: {"imap": health.detail()},
            degraded=lambda: [f"imap {name}" for name in health.failing()],
        )
    )
    return TestClient(app)


def test_a_failing_mailbox_makes_readiness_degraded_until_it_succeeds_again() -> None:
    health = ImapHealth(clock=Clock())
    health.watch("support", "INBOX")
    health.watch("support", "Billing")
    client = _app(health)
    first = client.get("/readyz").json()
    assert first["status"] == "ready" and "degraded" not in first
    assert first["serving"]["imap"]["support/INBOX"] == {
        "status": "ok",
        "last_success_at": None,
        "last_error": None,
        "last_error_at": None,
        "backlog": None,
    }

    health.succeeded("support", "INBOX")
    health.failed("support", "Billing", "MailboxError: cannot open mailbox 'Billing'")
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "degraded"
    assert answer.json()["degraded"] == ["imap support/Billing"]
    billing = answer.json()["serving"]["imap"]["support/Billing"]
    assert billing["status"] == "failing" and billing["last_error"].startswith("MailboxError")

    health.backlog("support", "Billing", 0)
    health.succeeded("support", "Billing")
    after = client.get("/readyz").json()
    assert after["status"] == "ready"
    billing = after["serving"]["imap"]["support/Billing"]
    assert billing["status"] == "ok" and billing["backlog"] == 0
    assert billing["last_error"].startswith("MailboxError"), "the last error stays visible"

    health.failed("support", "INBOX", "ConnectionResetError")
    down = _app(health, ready=False).get("/readyz")
    assert down.status_code == 503 and down.json()["status"] == "not ready"


class RefusingServer:
    """An IMAP client whose server refuses the move and the folder's creation."""

    def __init__(self) -> None:
        self.flagged: list[int] = []
        self.created: list[str] = []

    def has_capability(self, name: str) -> bool:
        return name == "MOVE"

    def move(self, uids: list[int], folder: str) -> None:
        raise IMAPClientError(f"move failed: [TRYCREATE] Mailbox doesn't exist: {folder}")

    def folder_exists(self, folder: str) -> bool:
        return False

    def create_folder(self, folder: str) -> None:
        raise IMAPClientError("create failed: [NOPERM] Permission denied")

    def add_flags(self, uids: list[int], flags: list[bytes]) -> None:
        assert flags == [TRIAGED_FLAG]
        self.flagged.extend(uids)


def test_a_move_the_server_refuses_flags_the_message_and_says_why() -> None:
    account = ImapAccount(
        name="support",
        host="imap.invalid",
        username="u",
        password=SecretStr("p"),
        post_process=PostProcess.MOVE,
        move_to="Done",
    )
    connector = ImapConnector(cast(Any, None), cast(Any, None), account, ImapHealth())
    server = RefusingServer()
    problem = connector._post_process(cast(Any, server), 7, DEFAULT_RULE)
    assert server.flagged == [7]
    assert problem is not None
    assert "cannot move to 'Done'" in problem and "NOPERM" in problem


def test_failures_are_counted_by_what_failed() -> None:
    assert failure_outcome(LoginError("[AUTHENTICATIONFAILED]")) == "auth_error"
    assert failure_outcome(MailboxError("cannot open mailbox")) == "mailbox_error"
    assert failure_outcome(IMAPClientAbortError("socket error: EOF")) == "connection_error"
    assert failure_outcome(ConnectionResetError()) == "connection_error"
    assert failure_outcome(OperationalError("SELECT 1", {}, Exception("down"))) == (
        "dependency_error"
    )


class AttemptsInMemory:
    """The IMAP attempt records of IngestStore, in memory."""

    def __init__(self, earlier: int) -> None:
        self.attempts = earlier
        self.failures: list[tuple[str, bool]] = []

    async def begin_imap_attempt(
        self, account: str, mailbox: str, *, uidvalidity: int, uid: int
    ) -> tuple[int, str | None]:
        self.attempts += 1
        return self.attempts - 1, None

    async def fail_imap_attempt(
        self, account: str, mailbox: str, *, uidvalidity: int, uid: int, error: str, counts: bool
    ) -> None:
        self.attempts -= 0 if counts else 1
        self.failures.append((error, counts))


class FailingIntake:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.dead_letters: list[str] = []

    async def accept_email(self, raw: bytes, **where: object) -> None:
        raise self.error

    async def store_bytes(self, data: bytes) -> str:
        return "0" * 64

    async def dead_letter(self, *, reason: str, **_: object) -> None:
        self.dead_letters.append(reason)


async def _take(error: Exception, *, earlier: int) -> tuple[AttemptsInMemory, FailingIntake]:
    store, intake = AttemptsInMemory(earlier), FailingIntake(error)
    account = ImapAccount(
        name="support", host="imap.invalid", username="u", password=SecretStr("p"), max_attempts=3
    )
    connector = ImapConnector(cast(Any, intake), cast(Any, store), account, ImapHealth())
    with contextlib.suppress(MessageIntakeError):
        await connector._take(cast(Any, None), "INBOX", uidvalidity=1, uid=9, raw=b"x")
    return store, intake


async def test_an_outage_does_not_count_towards_a_messages_attempts() -> None:
    store, intake = await _take(ConnectionResetError("reset by peer"), earlier=2)
    assert store.failures == [("ConnectionResetError: reset by peer", False)]
    assert store.attempts == 2 and intake.dead_letters == [], "an outage is not counted"

    store, intake = await _take(ValueError("bad part"), earlier=2)
    assert store.failures == [("ValueError: bad part", True)]
    assert intake.dead_letters == [
        "IMAP INBOX UID 9: intake failed 3 times; last: ValueError: bad part"
    ]
