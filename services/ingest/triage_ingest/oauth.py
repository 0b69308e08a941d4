"""OAuth2 access tokens for IMAP login, fetched from the provider's token endpoint and reused
until shortly before they expire."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from triage_ingest.settings import ImapOAuth2, OAuthGrant

TOKEN_TIMEOUT_SECONDS = 30.0


class TokenRefusedError(Exception):
    """The token endpoint gave no access token (refused grant, bad client, or unreachable)."""


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float | None  # monotonic; None when the endpoint gave no expires_in


class AccessTokens:
    """The current access token of one account; safe to share between mailbox threads."""

    def __init__(
        self,
        settings: ImapOAuth2,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._clock = clock
        self._lock = threading.Lock()
        self._token: _Token | None = None
        # Providers may rotate the refresh token; the newest one is kept (in memory only).
        self._refresh_token = settings.refresh_token

    def current(self) -> str:
        """A token that is not about to expire, fetching a new one when needed."""
        with self._lock:
            token = self._token
            if token is None or self._expiring(token):
                token = self._fetch()
            return token.value

    def renew(self, refused: str) -> str:
        """A new token in place of ``refused`` (one the server would not take), unless another
        thread already replaced it."""
        with self._lock:
            token = self._token
            if token is None or token.value == refused:
                token = self._fetch()
            return token.value

    def _expiring(self, token: _Token) -> bool:
        if token.expires_at is None:
            return False
        return self._clock() >= token.expires_at - self._settings.refresh_margin_seconds

    def _fetch(self) -> _Token:
        settings = self._settings
        form = {"grant_type": settings.grant.value, "client_id": settings.client_id}
        if settings.client_secret is not None:
            form["client_secret"] = settings.client_secret.get_secret_value()
        if settings.grant is OAuthGrant.REFRESH_TOKEN and self._refresh_token is not None:
            form["refresh_token"] = self._refresh_token.get_secret_value()
        if settings.scope:
            form["scope"] = settings.scope
        asked = self._clock()
        try:
            with httpx.Client(transport=self._transport, timeout=TOKEN_TIMEOUT_SECONDS) as http:
                response = http.post(settings.token_url, data=form)
        except httpx.HTTPError as error:
            raise TokenRefusedError(f"token endpoint unreachable: {error}") from error
        body = _json_object(response)
        access_token = body.get("access_token")
        if response.status_code != httpx.codes.OK or not isinstance(access_token, str):
            reason = body.get("error_description") or body.get("error") or "no access_token"
            raise TokenRefusedError(f"token endpoint answered {response.status_code}: {reason}")
        expires_at = _expires_at(asked, body.get("expires_in"))
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated:
            self._refresh_token = SecretStr(rotated)
        self._token = _Token(value=access_token, expires_at=expires_at)
        return self._token


def _json_object(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _expires_at(asked: float, expires_in: object) -> float | None:
    # Some endpoints send the lifetime as a string of digits.
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        return asked + float(expires_in)
    return None
