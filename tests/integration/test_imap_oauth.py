"""IMAP with OAuth2 against a real Dovecot whose oauth2 passdb asks a token-introspection
endpoint the test runs: XOAUTH2 and OAUTHBEARER login, token refresh, backoff on refusal."""

from __future__ import annotations

import asyncio
import logging
import math
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient
from prometheus_client import REGISTRY

from tests.integration.test_imap import Harness, _document_count, _message
from tests.oauth_idp import DOVEADM, IdentityProvider, OAuthImapServer, oauth_dovecot
from tests.stack import Stack, require_imap
from triage_ingest.imap import ImapConnector
from triage_ingest.mailrules import PostProcess
from triage_ingest.settings import ImapAccount

USER = "triage"


@pytest.fixture
def provider() -> Iterator[IdentityProvider]:
    with IdentityProvider(username=USER).serving() as running:
        yield running


@pytest.fixture
def server(provider: IdentityProvider) -> Iterator[OAuthImapServer]:
    with oauth_dovecot(provider) as running:
        yield running


@pytest.fixture
async def harness(isolated: Stack, clean_db: str, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(isolated, clean_db, tmp_path / "blobs")
    await h.broker.start()
    yield h
    await h.broker.stop()
    await h.engine.dispose()


def _append(server: OAuthImapServer, provider: IdentityProvider, messages: list[bytes]) -> None:
    """Deliver mail as another client of the mailbox would, with a token of its own."""
    with IMAPClient("127.0.0.1", port=server.port, ssl=False) as client:
        client.oauth2_login(USER, provider.issue())
        for raw in messages:
            client.append("INBOX", raw)


def _account(server: OAuthImapServer, provider: IdentityProvider, **oauth2: object) -> ImapAccount:
    settings: dict[str, object] = {
        "token_url": f"{provider.url}/token",
        "client_id": provider.client_id,
        "refresh_token": provider.refresh_token,
        "scope": "https://mail.example/imap",
        **oauth2,
    }
    return ImapAccount.model_validate(
        {
            "name": "oauth",
            "host": "127.0.0.1",
            "port": server.port,
            "tls": False,
            "username": USER,
            "auth": "oauth2",
            "oauth2": settings,
            "post_process": PostProcess.LEAVE,
            "poll_seconds": 0.5,
            "auth_retry_seconds": 0.5,
            "auth_retry_max_seconds": 4,
        }
    )


async def _poll(connector: ImapConnector) -> int:
    """Connect (logging in afresh, as after a dropped session) and read INBOX once."""
    client = await asyncio.to_thread(connector._connect)
    try:
        return await connector.poll_mailbox(client, "INBOX")
    finally:
        await asyncio.to_thread(client.logout)


@pytest.mark.parametrize(
    ("mechanism", "grant"),
    [("xoauth2", "refresh_token"), ("oauthbearer", "client_credentials")],
)
async def test_oauth2_login_reads_the_mailbox(
    clean_db: str,
    provider: IdentityProvider,
    server: OAuthImapServer,
    harness: Harness,
    mechanism: str,
    grant: str,
) -> None:
    _append(server, provider, [_message(1), _message(2)])
    account = _account(
        server,
        provider,
        mechanism=mechanism,
        grant=grant,
        client_secret=provider.client_secret,
    )
    connector = ImapConnector(harness.intake, harness.store, account)

    assert await _poll(connector) == 2
    assert _document_count(clean_db) == 2
    assert len(provider.grants) == 1
    assert provider.grants[0]["grant_type"] == grant
    assert provider.grants[0]["scope"] == "https://mail.example/imap"
    method = "XOAUTH2" if mechanism == "xoauth2" else "OAUTHBEARER"
    assert f"user=<{USER}>, method={method}" in (server.directory / "dovecot.log").read_text()


async def test_tokens_are_renewed_before_expiry_and_once_when_refused(
    clean_db: str, provider: IdentityProvider, server: OAuthImapServer, harness: Harness
) -> None:
    provider.lifetime_seconds = 5
    account = _account(server, provider, refresh_margin_seconds=1)
    connector = ImapConnector(harness.intake, harness.store, account)
    _append(server, provider, [_message(1)])
    assert await _poll(connector) == 1
    granted_by = time.monotonic()
    assert await _poll(connector) == 0
    assert len(provider.grants) == 1, "a token with time left is reused"

    # Sleep into the last refresh_margin_seconds of the token's life (it is still valid).
    await asyncio.sleep(granted_by + 4.2 - time.monotonic())
    _append(server, provider, [_message(2)])
    assert await _poll(connector) == 1
    assert len(provider.grants) == 2, "renewed before it expired"
    assert provider.refused_logins() == 0

    # The provider revokes the token early; the server refuses it; one renewal logs in.
    provider.revoked.add(provider.introspected[-1][0])
    _append(server, provider, [_message(3)])
    assert await _poll(connector) == 1
    assert len(provider.grants) == 3
    assert provider.refused_logins() == 1
    assert _document_count(clean_db) == 3


def _kick(server: OAuthImapServer) -> None:
    """Drop the user's sessions, as a provider does when their token expires."""
    subprocess.run(
        [DOVEADM, "-c", str(server.directory / "dovecot.conf"), "kick", USER],
        check=True,
        capture_output=True,
        timeout=30,
    )


async def _wait_for(condition: object, timeout: float = 20.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_running_connector_refreshes_an_expired_token_and_keeps_reading(
    clean_db: str, provider: IdentityProvider, server: OAuthImapServer, harness: Harness
) -> None:
    provider.lifetime_seconds = 2
    account = _account(server, provider, refresh_margin_seconds=0.5)
    connector = ImapConnector(harness.intake, harness.store, account)
    _append(server, provider, [_message(1)])
    await connector.start()
    try:
        await _wait_for(lambda: _document_count(clean_db) == 1)
        first = provider.introspected[-1][0]
        await _wait_for(lambda: not provider.active(first))
        _kick(server)  # the session ends; the connector must log in again, with a new token
        _append(server, provider, [_message(2)])
        await _wait_for(lambda: _document_count(clean_db) == 2)
    finally:
        await connector.stop()
    assert len(provider.grants) == 2
    assert provider.refused_logins() == 0, "the expired token was never offered"


async def test_mailboxes_of_one_account_share_a_token_and_renew_it_once(
    clean_db: str, provider: IdentityProvider, server: OAuthImapServer, harness: Harness
) -> None:
    mailboxes = ["INBOX", "Billing", "Support"]
    with IMAPClient("127.0.0.1", port=server.port, ssl=False) as client:
        client.oauth2_login(USER, provider.issue())
        for n, mailbox in enumerate(mailboxes):
            if mailbox != "INBOX":
                client.create_folder(mailbox)
            client.append(mailbox, _message(n))
    provider.grants.clear()
    account = _account(server, provider).model_copy(update={"mailboxes": mailboxes})
    connector = ImapConnector(harness.intake, harness.store, account)
    await connector.start()
    try:
        await _wait_for(lambda: _document_count(clean_db) == 3)
        assert len(provider.grants) == 1, "the readers logged in at once with one token"
        # The provider revokes it and every session ends: the readers log in again at the
        # same time, each finding the token refused, and one new token serves them all.
        provider.revoked.add(provider.introspected[-1][0])
        _kick(server)
        _append(server, provider, [_message(9)])
        await _wait_for(lambda: _document_count(clean_db) == 4)
    finally:
        await connector.stop()
    assert len(provider.grants) == 2
    assert 1 <= provider.refused_logins() <= len(mailboxes)


def _auth_errors() -> float:
    labels = {"kind": "imap", "outcome": "auth_error"}
    return REGISTRY.get_sample_value("triage_ingest_connector_items_total", labels) or 0.0


async def test_a_refused_login_backs_off_and_recovers(
    clean_db: str,
    provider: IdentityProvider,
    server: OAuthImapServer,
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider.revoked_all = True
    account = _account(server, provider)
    connector = ImapConnector(harness.intake, harness.store, account)
    errors_before = _auth_errors()
    caplog.set_level(logging.INFO, logger="triage_ingest.imap")

    def refusals() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("imap login refused")]

    started = time.monotonic()
    await connector.start()
    try:
        await _wait_for(lambda: len(refusals()) >= 4, timeout=30)
    finally:
        await connector.stop()
    elapsed = time.monotonic() - started

    attempts = len(refusals())
    # Each attempt offers the token it has, then one renewed token: two refused logins.
    assert provider.refused_logins() == 2 * attempts
    assert _auth_errors() - errors_before == attempts
    waits = [r.__dict__["retry_seconds"] for r in refusals()]
    assert waits == [min(0.5 * 2**n, 4) for n in range(attempts)], "waits double to the cap"
    # Attempt n starts after waits summing to 0.5 * (2**n - 1) s, so however slow the machine,
    # no more attempts than that reached the server.
    assert attempts <= math.floor(math.log2(elapsed / 0.5 + 1)) + 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no tracebacks"

    # The provider takes the tokens again: the connector logs in and reads the mail.
    provider.revoked_all = False
    _append(server, provider, [_message(1)])
    caplog.clear()
    await connector.start()
    try:
        await _wait_for(lambda: _document_count(clean_db) == 1)
    finally:
        await connector.stop()
    assert refusals() == []


async def test_a_wrong_password_backs_off_too(
    isolated: Stack, harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    imap = require_imap(isolated)
    account = ImapAccount.model_validate(
        {
            "name": "support",
            "host": imap.host,
            "port": imap.port,
            "tls": False,
            "username": imap.user,
            "password": "not-the-password",
            "poll_seconds": 0.2,
            "auth_retry_seconds": 0.5,
            "auth_retry_max_seconds": 1,
        }
    )
    connector = ImapConnector(harness.intake, harness.store, account)
    errors_before = _auth_errors()
    caplog.set_level(logging.INFO, logger="triage_ingest.imap")

    def refusals() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("imap login refused")]

    await connector.start()
    try:
        await _wait_for(lambda: len(refusals()) >= 4, timeout=30)
    finally:
        await connector.stop()
    attempts = len(refusals())
    assert [r.__dict__["retry_seconds"] for r in refusals()] == [0.5, *[1.0] * (attempts - 1)]
    assert _auth_errors() - errors_before == attempts
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no tracebacks"
