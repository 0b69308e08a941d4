"""Signing in and out: the login form, the session cookie, and logout."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from triage_review_ui.deps import COOKIE, AuthDep, PagesDep, SessionDep, SettingsDep
from triage_review_ui.domain import is_local_path
from triage_review_ui.pages import Pages
from triage_review_ui.security import (
    DEVICE_COOKIE,
    LOGIN_CSRF_COOKIE,
    client_address,
    login_csrf_token,
    secure_cookies,
    set_login_csrf_cookie,
)
from triage_review_ui.settings import Settings
from triage_runtime.accounts.store import RateLimitedError

HTTP_429 = status.HTTP_429_TOO_MANY_REQUESTS

router = APIRouter()


def _login_page(
    request: Request,
    pages: Pages,
    settings: Settings,
    *,
    next: str,
    error: str | None = None,
    code: int = status.HTTP_200_OK,
) -> Response:
    """The sign-in form, with its CSRF token in the form and in a pre-session cookie."""
    token = login_csrf_token(request)
    response = pages.render(request, "login.html", None, next=next, error=error, csrf=token)
    response.status_code = code
    set_login_csrf_cookie(response, token, secure=secure_cookies(request, settings))
    return response


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_form(
    request: Request, pages: PagesDep, settings: SettingsDep, next: str = "/"
) -> Response:
    return _login_page(request, pages, settings, next=next)


@router.post("/login", include_in_schema=False)
async def login(
    request: Request,
    auth: AuthDep,
    pages: PagesDep,
    settings: SettingsDep,
    *,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    device = request.cookies.get(DEVICE_COOKIE)
    try:
        user = await auth.authenticate(username, password, client_address(request), device)
    except RateLimitedError as exc:
        response = _login_page(request, pages, settings, next=next, error=str(exc), code=HTTP_429)
        response.headers["Retry-After"] = str(math.ceil(exc.retry_after.total_seconds()))
        return response
    if user is None:
        return _login_page(
            request,
            pages,
            settings,
            next=next,
            error="wrong user name or password",
            code=status.HTTP_401_UNAUTHORIZED,
        )
    token, _csrf = await auth.start_session(user.id, timedelta(hours=settings.session_hours))
    device = await auth.remember_device(user, device)
    await auth.audit(user.username, "login")
    target = next if is_local_path(next) else "/"
    response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
    secure = secure_cookies(request, settings)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    # Marks this browser as one that signed in before: its attempts are held to its own
    # count, not to what others try against the same name (docs/review.md#security).
    response.set_cookie(
        DEVICE_COOKIE,
        device,
        max_age=auth.throttle.device_days * 24 * 3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    response.delete_cookie(
        LOGIN_CSRF_COOKIE, path="/login", secure=secure, httponly=True, samesite="strict"
    )
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, session: SessionDep, auth: AuthDep) -> Response:
    token = request.cookies.get(COOKIE)
    if token:
        await auth.end_session(token)
    await auth.audit(session.user.username, "logout")
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE)
    return response
