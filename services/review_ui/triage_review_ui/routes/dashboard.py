"""What ops staff watch: the dashboard and the audit trail."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from triage_review_ui.deps import (
    PagesDep,
    QualityDep,
    QueriesDep,
    SessionDep,
    SettingsDep,
    require,
)
from triage_runtime.accounts.credentials import Action, can

router = APIRouter()


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
async def audit_page(
    request: Request, session: SessionDep, queries: QueriesDep, pages: PagesDep
) -> Response:
    require(session, Action.REVIEW)
    rows, per_reviewer = await queries.audit()
    return pages.render(request, "audit.html", session, rows=rows, per_reviewer=per_reviewer)


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard(
    request: Request,
    session: SessionDep,
    *,
    queries: QueriesDep,
    pages: PagesDep,
    quality: QualityDep,
    settings: SettingsDep,
) -> Response:
    require(session, Action.REVIEW)
    # Live precision only for admins: reviewers who watched its counts move as they decide
    # could tell which of their items were quality samples.
    live, target = await quality.read() if can(session.user.role, Action.ADMIN) else ([], None)
    return pages.render(
        request,
        "dashboard.html",
        session,
        stats=await queries.dashboard(due_soon=timedelta(hours=settings.due_soon_hours)),
        live=live,
        target=target,
    )
