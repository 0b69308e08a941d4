"""User administration (admins only): list, add, disable and enable users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from triage_review_ui.deps import AuthDep, PagesDep, SessionDep, require
from triage_runtime.accounts.credentials import Action
from triage_runtime.accounts.store import LastAdminError, OwnAccountError, UnknownUserError

router = APIRouter()


@router.get("/admin/users", response_class=HTMLResponse, include_in_schema=False)
async def users_page(
    request: Request, session: SessionDep, auth: AuthDep, pages: PagesDep
) -> Response:
    require(session, Action.ADMIN)
    return pages.render(request, "users.html", session, users=await auth.list_users(), error=None)


@router.post("/admin/users", include_in_schema=False)
async def add_user(
    request: Request,
    session: SessionDep,
    *,
    auth: AuthDep,
    pages: PagesDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    role: Annotated[str, Form()],
) -> Response:
    require(session, Action.ADMIN)
    try:
        await auth.create_user(username, password, role)
    except (ValueError, RuntimeError) as exc:
        response = pages.render(
            request, "users.html", session, users=await auth.list_users(), error=str(exc)
        )
        response.status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
        return response
    await auth.audit(session.user.username, "add_user", detail={"username": username})
    return RedirectResponse("/admin/users", status.HTTP_303_SEE_OTHER)


@router.post("/admin/users/{username}/{change}", include_in_schema=False)
async def change_user(
    username: str,
    change: str,
    session: SessionDep,
    auth: AuthDep,
) -> Response:
    require(session, Action.ADMIN)
    try:
        if change == "disable":
            await auth.disable_user(username, by=session.user.username)
        elif change == "enable":
            await auth.enable_user(username)
        else:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown change")
    except (OwnAccountError, LastAdminError) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except UnknownUserError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    await auth.audit(session.user.username, f"{change}_user", detail={"username": username})
    return RedirectResponse("/admin/users", status.HTTP_303_SEE_OTHER)
