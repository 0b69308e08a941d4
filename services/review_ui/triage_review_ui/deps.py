"""Request dependencies: the signed-in session, the checks on it, and what ``create_app`` built."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response

from triage_review_ui.background import LiveQuality
from triage_review_ui.documents import ItemDocuments
from triage_review_ui.domain import login_next
from triage_review_ui.pages import Pages
from triage_review_ui.queries import ReviewQueries
from triage_review_ui.search import ItemTexts
from triage_review_ui.settings import Settings
from triage_runtime.accounts.credentials import Action, can, verify_csrf
from triage_runtime.accounts.store import AuthStore, SessionInfo
from triage_runtime.http import app_state
from triage_runtime.outcomes.review import ReviewWorkflow

COOKIE = "triage_session"


SettingsDep = Annotated[Settings, app_state("settings")]
AuthDep = Annotated[AuthStore, app_state("auth")]
QueriesDep = Annotated[ReviewQueries, app_state("queries")]
WorkflowDep = Annotated[ReviewWorkflow, app_state("workflow")]
DocumentsDep = Annotated[ItemDocuments, app_state("documents")]
PagesDep = Annotated[Pages, app_state("pages")]
QualityDep = Annotated[LiveQuality, app_state("quality")]
TextsDep = Annotated[ItemTexts, app_state("texts")]


class LoginRequiredError(Exception):
    """The request needs a signed-in user."""


async def current_session(request: Request, auth: AuthDep) -> SessionInfo:
    """The signed-in user's session, or a redirect to the login page."""
    token = request.cookies.get(COOKIE)
    found = await auth.session_user(token) if token else None
    if found is None:
        raise LoginRequiredError
    return found


SessionDep = Annotated[SessionInfo, Depends(current_session)]


async def to_login(request: Request, _exc: Exception) -> Response:
    """Answer a request without a session: 401 from the JSON API and to scripts (the claim
    heartbeat), else the login page, which returns to the page the reviewer was on."""
    if request.url.path.startswith("/api/") or wants_json(request):
        return Response(status_code=status.HTTP_401_UNAUTHORIZED)
    target = login_next(request.method, request.url.path)
    return RedirectResponse(f"/login?next={target}", status.HTTP_303_SEE_OTHER)


def wants_json(request: Request) -> bool:
    """Whether the page's script sent this request (it asks for JSON), not a form."""
    return request.headers.get("accept") == "application/json"


def require(session: SessionInfo, action: Action) -> None:
    """Refuse (403) an action the user's role does not allow."""
    if not can(session.user.role, action):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "your role does not allow this")


def check_csrf(session: SessionInfo, presented: str | None) -> None:
    """Refuse (403) a form whose CSRF token is not this session's.

    ``security.csrf_guard`` calls it for every state-changing request of every route; routes
    never call it themselves.
    """
    if not verify_csrf(session.csrf_token, presented):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form's CSRF token is missing or stale")
