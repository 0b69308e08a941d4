"""What every response and every state-changing request of the review UI goes through.

Security headers on every response, the CSRF check on every POST/PUT/PATCH/DELETE (the
session's token, or before sign-in the login form's own), which proxies' ``X-Forwarded-*``
headers are believed, and whether cookies are ``Secure``. ``docs/review.md#security``.
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI, HTTPException, Request, Response, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from triage_review_ui.deps import COOKIE, check_csrf
from triage_review_ui.settings import Settings
from triage_runtime.accounts.credentials import verify_csrf
from triage_runtime.accounts.store import AuthStore

LOGIN_CSRF_COOKIE = "triage_login_csrf"
DEVICE_COOKIE = "triage_device"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Pages: only this site's own script, styles, frames and forms; nothing inline; framed only
# by this site (the item page frames its own PDF).
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
# Anything else (a document, JSON): may be framed by this site only. Chromium's PDF viewer
# needs its own resources, so no default-src here.
OTHER_POLICY = "frame-ancestors 'self'"
HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
    b"x-frame-options": b"SAMEORIGIN",
    b"cross-origin-opener-policy": b"same-origin",
}


class SecurityHeaders:
    """Adds the security headers to every response, and ``Cache-Control: no-store`` to all
    but the static files, so nothing with data stays in a browser's cache (or its Back)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the response's start."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name not in HEADERS and not (name == b"cache-control" and not static)
                ]
                names = {name for name, _ in headers}
                if b"content-security-policy" not in names:
                    html = any(
                        name == b"content-type" and value.startswith(b"text/html")
                        for name, value in headers
                    )
                    policy = PAGE_POLICY if html else OTHER_POLICY
                    headers.append((b"content-security-policy", policy.encode()))
                headers.extend(HEADERS.items())
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, with_headers)


def install(app: FastAPI, settings: Settings) -> None:
    """Wrap ``app`` in the headers, and in the proxy headers of the trusted proxies only."""
    app.add_middleware(SecurityHeaders)
    if settings.trusted_proxies:
        # Outermost, so the client address and scheme are the real ones for everything else.
        app.add_middleware(
            ProxyHeadersMiddleware,
            trusted_hosts=[str(network) for network in settings.trusted_proxies],
        )


def secure_cookies(request: Request, settings: Settings) -> bool:
    """Whether cookies are sent ``Secure``: over HTTPS (directly, or as a trusted proxy's
    ``X-Forwarded-Proto`` says), or always when the setting forces it."""
    return settings.cookie_secure or request.url.scheme == "https"


def client_address(request: Request) -> str:
    """The caller's address: the connection's, or a trusted proxy's ``X-Forwarded-For``."""
    return request.client.host if request.client else "unknown"


def login_csrf_token(request: Request) -> str:
    """The token of the sign-in form: the browser's pre-session cookie's, or a fresh one."""
    held = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return held if 20 <= len(held) <= 64 and held.isascii() else secrets.token_urlsafe(32)


def set_login_csrf_cookie(response: Response, token: str, *, secure: bool) -> None:
    """Give the browser the sign-in form's token as a cookie, to be sent back with the form."""
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=12 * 3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=secure,
    )


async def csrf_guard(request: Request) -> None:
    """Refuse (403) a state-changing request without this session's CSRF token, or a sign-in
    without the token its form was given (double submit: cookie and form must agree)."""
    if request.method not in UNSAFE_METHODS:
        return
    form = await request.form()
    field = form.get(CSRF_FIELD)
    presented = field if isinstance(field, str) else request.headers.get(CSRF_HEADER)
    if request.url.path == "/login":
        if not verify_csrf(request.cookies.get(LOGIN_CSRF_COOKIE, ""), presented):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "This sign-in form has expired or came from another site: reload the sign-in"
                " page and try again.",
            )
        return
    token = request.cookies.get(COOKIE)
    auth: AuthStore = request.app.state.auth
    session = await auth.session_user(token) if token else None
    if session is not None:
        check_csrf(session, presented)
    # Without a session the route itself answers (the way to the login page).
