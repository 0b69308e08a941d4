"""An item's history and what changes it after the fact: undo, reopen, escalate, comment."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, status
from fastapi.responses import RedirectResponse, Response

from triage_contracts import utcnow
from triage_review_ui.deps import (
    QueriesDep,
    SessionDep,
    WorkflowDep,
    require,
)
from triage_review_ui.queries import ReviewQueries
from triage_review_ui.settings import Settings
from triage_runtime.accounts.credentials import Action, can
from triage_runtime.accounts.store import SessionInfo
from triage_runtime.db.models import ReviewItem
from triage_runtime.outcomes.review import (
    MAX_COMMENT_CHARS,
    MAX_ESCALATION_CHARS,
    WorkflowError,
)

router = APIRouter()


async def history_context(
    item: ReviewItem, session: SessionInfo, queries: ReviewQueries, settings: Settings
) -> dict[str, Any]:
    """What ``_history.html`` needs: the history, whether this user may undo or reopen it,
    and the user's last decision while it can still be undone (to undo from the next item)."""
    window = timedelta(minutes=settings.undo_minutes)
    now = utcnow()
    undo_until = None
    if item.status == "decided" and item.decided_by == session.user.username and item.decided_at:
        undo_until = item.decided_at + window if item.decided_at + window > now else None
    last = await queries.last_decided(session.user.username, since=now - window)
    return {
        "history": await queries.history(item),
        "undo_until": undo_until,
        "may_reopen": item.status == "decided" and can(session.user.role, Action.ADMIN),
        "last_decided": last if last is not None and last.id != item.id else None,
    }


def _back(item_id: int) -> Response:
    return RedirectResponse(f"/items/{item_id}", status.HTTP_303_SEE_OTHER)


async def _then_back(item_id: int, step: Awaitable[object]) -> Response:
    """Run one change to a decided item and go back to it; a refused change is 409."""
    try:
        await step
    except WorkflowError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return _back(item_id)


@router.post("/items/{item_id}/undo", include_in_schema=False)
async def undo(item_id: int, session: SessionDep, workflow: WorkflowDep) -> Response:
    require(session, Action.REVIEW)
    return await _then_back(item_id, workflow.undo(item_id, reviewer=session.user.username))


@router.post("/items/{item_id}/reopen", include_in_schema=False)
async def reopen(item_id: int, session: SessionDep, workflow: WorkflowDep) -> Response:
    require(session, Action.ADMIN)
    return await _then_back(item_id, workflow.reopen(item_id, admin=session.user.username))


@router.post("/items/{item_id}/escalate", include_in_schema=False)
async def escalate(
    item_id: int,
    session: SessionDep,
    workflow: WorkflowDep,
    reason: Annotated[str, Form(max_length=MAX_ESCALATION_CHARS)] = "",
) -> Response:
    require(session, Action.REVIEW)
    step = workflow.escalate(item_id, actor=session.user.username, reason=reason)
    return await _then_back(item_id, step)


@router.post("/items/{item_id}/comment", include_in_schema=False)
async def comment(
    item_id: int,
    session: SessionDep,
    *,
    workflow: WorkflowDep,
    queries: QueriesDep,
    body: Annotated[str, Form(max_length=MAX_COMMENT_CHARS)] = "",
) -> Response:
    require(session, Action.REVIEW)
    if await queries.item(item_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such review item")
    try:
        await workflow.comment(item_id, author=session.user.username, body=body)
    except WorkflowError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return RedirectResponse(f"/items/{item_id}#history", status.HTTP_303_SEE_OTHER)
