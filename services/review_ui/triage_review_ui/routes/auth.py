"""Signing in and out: the login form, the session cookie, and logout."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from triage_review_ui.deps import COOKIE, AuthDep, PagesDep, SessionDep, SettingsDep, check_csrf
from triage_review_ui.domain import is_local_path
from triage_runtime.accounts.store import RateLimitedError

router = APIRouter()


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_form(request: Request, pages: PagesDep, next: str = "/") -> Response:
    return pages.render(request, "login.html", None, next=next, error=None)


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
    remote = request.client.host if request.client else "unknown"
    try:
        user = await auth.authenticate(username, password, remote)
    except RateLimitedError as exc:
        response = pages.render(request, "login.html", None, next=next, error=str(exc))
        response.status_code = status.HTTP_429_TOO_MANY_REQUESTS
        return response
    if user is None:
        response = pages.render(
            request, "login.html", None, next=next, error="wrong user name or password"
        )
        response.status_code = status.HTTP_401_UNAUTHORIZED
        return response
    token, _csrf = await auth.start_session(user.id, timedelta(hours=settings.session_hours))
    await auth.audit(user.username, "login")
    target = next if is_local_path(next) else "/"
    response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
    )
    return response


@router.post("/logout", include_in_schema=False)
async def logout(
    request: Request, session: SessionDep, auth: AuthDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(session, csrf)
    token = request.cookies.get(COOKIE)
    if token:
        await auth.end_session(token)
    await auth.audit(session.user.username, "logout")
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE)
    return response
