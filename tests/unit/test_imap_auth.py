"""IMAP login settings, OAuth2 access tokens and the backoff after refused logins."""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from tests.helpers import REPO_ROOT
from triage_ingest.imap import AuthBackoff
from triage_ingest.oauth import AccessTokens, TokenRefusedError
from triage_ingest.settings import ImapAccount, ImapAuth, ImapOAuth2, OAuthGrant

BASE = {"name": "support", "host": "imap.example.com", "username": "support@example.com"}
OAUTH = {
    "token_url": "https://login.example.com/token",
    "client_id": "client-1",
    "refresh_token": "rt-secret-1",
}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, 'auth "password" needs "password"'),
        ({"auth": "oauth2"}, 'auth "oauth2" needs an "oauth2" object'),
        (
            {"auth": "oauth2", "oauth2": {**OAUTH, "refresh_token": None}},
            'grant "refresh_token" needs "refresh_token"',
        ),
        (
            {"auth": "oauth2", "oauth2": {**OAUTH, "grant": "client_credentials"}},
            'grant "client_credentials" needs "client_secret"',
        ),
        ({"auth": "oauth2", "oauth2": {**OAUTH, "token_url": "login.example.com"}}, "https?://"),
        ({"auth": "oauth2", "oauth2": {**OAUTH, "mechanism": "plain"}}, "xoauth2"),
    ],
)
def test_account_settings_say_what_is_missing(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ImapAccount.model_validate({**BASE, **values})


def test_the_documented_account_examples_are_valid_settings() -> None:
    text = (REPO_ROOT / "docs" / "ingest.md").read_text()
    examples = re.findall(r"TRIAGE_INGEST_IMAP_ACCOUNTS='(\[.*?\])'", text, re.DOTALL)
    accounts = [a for e in examples for a in TypeAdapter(list[ImapAccount]).validate_json(e)]
    assert {a.auth for a in accounts} == {ImapAuth.PASSWORD, ImapAuth.OAUTH2}
    [oauth] = [a for a in accounts if a.auth is ImapAuth.OAUTH2]
    assert oauth.oauth2 is not None
    assert oauth.oauth2.grant is OAuthGrant.CLIENT_CREDENTIALS


def test_oauth2_secrets_are_not_printed() -> None:
    account = ImapAccount.model_validate(
        {**BASE, "auth": "oauth2", "oauth2": {**OAUTH, "client_secret": "cs-secret-2"}}
    )
    for shown in (repr(account), str(account), account.model_dump_json()):
        assert "cs-secret-2" not in shown
        assert "rt-secret-1" not in shown


class Endpoint:
    """A token endpoint answering from a script, recording the forms it was sent."""

    def __init__(self, *answers: tuple[int, dict[str, object]], delay: float = 0.0) -> None:
        self.answers = list(answers)
        self.delay = delay
        self.forms: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.forms.append(form)
        time.sleep(self.delay)  # a slow endpoint: other threads arrive meanwhile
        status, body = self.answers.pop(0)
        return httpx.Response(status, content=json.dumps(body).encode())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _tokens(endpoint: Endpoint, clock: Clock, **settings: object) -> AccessTokens:
    return AccessTokens(
        ImapOAuth2.model_validate({**OAUTH, "refresh_margin_seconds": 60, **settings}),
        transport=httpx.MockTransport(endpoint),
        clock=clock,
    )


def test_a_token_is_reused_until_the_margin_before_expiry() -> None:
    endpoint = Endpoint(
        (200, {"access_token": "at-1", "expires_in": 3600}),
        (200, {"access_token": "at-2", "expires_in": "3600"}),
    )
    clock = Clock()
    tokens = _tokens(endpoint, clock, scope="https://mail.google.com/")
    assert tokens.current() == "at-1"
    clock.now += 3539
    assert tokens.current() == "at-1"
    clock.now += 1
    assert tokens.current() == "at-2"
    assert endpoint.forms[0] == {
        "grant_type": "refresh_token",
        "client_id": "client-1",
        "refresh_token": "rt-secret-1",
        "scope": "https://mail.google.com/",
    }


def test_a_refused_token_is_renewed_once_however_many_threads_saw_it_refused() -> None:
    endpoint = Endpoint(
        (200, {"access_token": "at-1", "expires_in": 3600, "refresh_token": "rt-rotated"}),
        (200, {"access_token": "at-2", "expires_in": 3600}),
    )
    tokens = _tokens(endpoint, Clock())
    refused = tokens.current()
    assert tokens.renew(refused) == "at-2"
    assert tokens.renew(refused) == "at-2", "a second thread gets the renewed token"
    assert len(endpoint.forms) == 2
    assert endpoint.forms[1]["refresh_token"] == "rt-rotated", "the rotated token is used"


def test_threads_that_saw_one_token_refused_at_once_get_one_new_token() -> None:
    answers = [(200, {"access_token": f"at-{n}", "expires_in": 3600}) for n in range(10)]
    endpoint = Endpoint(*answers, delay=0.05)
    tokens = _tokens(endpoint, Clock())
    refused = tokens.current()
    start = threading.Barrier(8)

    def renew() -> str:
        start.wait()
        return tokens.renew(refused)

    with ThreadPoolExecutor(max_workers=8) as pool:
        renewed = list(pool.map(lambda _: renew(), range(8)))
    assert renewed == ["at-1"] * 8
    assert len(endpoint.forms) == 2


def test_client_credentials_send_the_secret_and_no_refresh_token() -> None:
    endpoint = Endpoint((200, {"access_token": "at-1"}))
    clock = Clock()
    tokens = _tokens(
        endpoint,
        clock,
        grant="client_credentials",
        client_secret="cs-1",
        refresh_token=None,
        scope="https://outlook.office365.com/.default",
    )
    assert tokens.current() == "at-1"
    clock.now += 10**6
    assert tokens.current() == "at-1", "without expires_in a token lasts until refused"
    assert endpoint.forms == [
        {
            "grant_type": "client_credentials",
            "client_id": "client-1",
            "client_secret": "cs-1",
            "scope": "https://outlook.office365.com/.default",
        }
    ]


def test_a_refused_grant_says_why_without_the_secrets() -> None:
    endpoint = Endpoint(
        (400, {"error": "invalid_grant", "error_description": "AADSTS70008: token expired"})
    )
    with pytest.raises(TokenRefusedError, match="400: AADSTS70008") as caught:
        _tokens(endpoint, Clock()).current()
    assert "rt-secret-1" not in str(caught.value)


def test_backoff_doubles_to_its_cap_and_starts_again_after_a_success() -> None:
    backoff = AuthBackoff(30, 200)
    assert [backoff.failed() for _ in range(5)] == [30, 60, 120, 200, 200]
    backoff.succeeded()
    assert backoff.failed() == 30
