"""Claims on an item: claim, renew (the page's heartbeat), skip; an admin releases or assigns
them. A person who opens one of these POST-only addresses (after signing in again, say)
lands on the item's page instead of a 405."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response

from triage_review_ui.deps import (
    AuthDep,
    PagesDep,
    QueriesDep,
    SessionDep,
    WorkflowDep,
    require,
    wants_json,
)
from triage_review_ui.domain import ClaimState, claim_state
from triage_runtime.accounts.credentials import Action, can
from triage_runtime.accounts.store import SessionInfo
from triage_runtime.db.models import ReviewItem
from triage_runtime.outcomes.review import Claim, ClaimConflictError, WorkflowError

POST_ONLY = ("decide", "release", "claim", "renew", "skip", "release-claim", "assign")
"""The item's addresses that only take a form (here and in routes/items.py)."""

router = APIRouter()


def _to_item(item_id: int) -> Response:
    return RedirectResponse(f"/items/{item_id}", status.HTTP_303_SEE_OTHER)


async def _show_item(item_id: int, session: SessionDep) -> Response:
    require(session, Action.REVIEW)  # signed out: the sign-in page, like every other page
    return _to_item(item_id)


for _action in POST_ONLY:
    router.add_api_route(
        f"/items/{{item_id}}/{_action}", _show_item, methods=["GET"], include_in_schema=False
    )


def _held(claim: Claim) -> dict[str, Any]:
    return {
        "held": True,
        "holder": claim.reviewer,
        "until": claim.until.isoformat(),
        "until_text": claim.until.strftime("%H:%M"),
    }


async def conflict_page(
    request: Request,
    item_id: int,
    session: SessionInfo,
    *,
    queries: QueriesDep,
    pages: PagesDep,
    message: str,
) -> Response:
    """Why an action on an item could not be done (decided, closed, someone else holds it),
    with the way on: 409, or 404 if there is no such item."""
    item = await queries.item(item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such review item")
    response = pages.render(
        request,
        "conflict.html",
        session,
        item=item,
        state=claim_state(item, session.user.username),
        message=message,
        next_id=await following(queries, item_id),
    )
    response.status_code = status.HTTP_409_CONFLICT
    return response


async def following(queries: QueriesDep, item_id: int) -> int | None:
    """The open item to go on to after ``item_id``: the next one due, else the first."""
    return await queries.neighbour(item_id, after=True) or await queries.first_open()


async def _holder(queries: QueriesDep, item_id: int) -> ReviewItem:
    item = await queries.item(item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such review item")
    return item


async def _unless_conflict(
    request: Request,
    item_id: int,
    session: SessionInfo,
    step: Awaitable[object],
    *,
    queries: QueriesDep,
    pages: PagesDep,
) -> Response | None:
    """Run one change to an item's claim: None when done, the conflict page when someone
    else holds the item; an item that does not exist is 404."""
    try:
        await step
    except ClaimConflictError as exc:
        return await conflict_page(
            request, item_id, session, queries=queries, pages=pages, message=str(exc)
        )
    except WorkflowError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return None


@router.post("/items/{item_id}/claim", include_in_schema=False)
async def claim(
    request: Request,
    item_id: int,
    session: SessionDep,
    *,
    workflow: WorkflowDep,
    queries: QueriesDep,
    pages: PagesDep,
) -> Response:
    require(session, Action.REVIEW)
    try:
        held = await workflow.claim(item_id, reviewer=session.user.username)
    except ClaimConflictError as exc:
        if wants_json(request):
            item = await _holder(queries, item_id)
            return JSONResponse(
                {"held": False, "holder": item.claimed_by, "message": str(exc)},
                status.HTTP_409_CONFLICT,
            )
        return await conflict_page(
            request, item_id, session, queries=queries, pages=pages, message=str(exc)
        )
    except WorkflowError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return JSONResponse(_held(held)) if wants_json(request) else _to_item(item_id)


@router.post("/items/{item_id}/renew", include_in_schema=False)
async def renew(
    item_id: int,
    session: SessionDep,
    *,
    workflow: WorkflowDep,
    queries: QueriesDep,
) -> Response:
    """The item page's heartbeat: extend the reviewer's own claim, or say who holds it now."""
    require(session, Action.REVIEW)
    held = await workflow.renew(item_id, reviewer=session.user.username)
    if held is not None:
        return JSONResponse(_held(held))
    item = await _holder(queries, item_id)
    state = claim_state(item, session.user.username)
    return JSONResponse(
        {
            "held": False,
            "holder": item.claimed_by if state is ClaimState.OTHER else None,
            "state": state.value,
        }
    )


@router.post("/items/{item_id}/skip", include_in_schema=False)
async def skip(
    request: Request,
    item_id: int,
    session: SessionDep,
    *,
    workflow: WorkflowDep,
    queries: QueriesDep,
    pages: PagesDep,
) -> Response:
    """Leave the item for someone else (released, not decided) and go on to the next one."""
    require(session, Action.REVIEW)
    refused = await _unless_conflict(
        request,
        item_id,
        session,
        workflow.skip(item_id, reviewer=session.user.username),
        queries=queries,
        pages=pages,
    )
    if refused is not None:
        return refused
    after = await queries.neighbour(item_id, after=True)
    return RedirectResponse(f"/items/{after}" if after else "/", status.HTTP_303_SEE_OTHER)


@router.post("/items/{item_id}/release-claim", include_in_schema=False)
async def release_claim(
    request: Request,
    item_id: int,
    session: SessionDep,
    *,
    workflow: WorkflowDep,
    queries: QueriesDep,
    pages: PagesDep,
) -> Response:
    """An admin ends whoever's claim on the item."""
    require(session, Action.ADMIN)
    refused = await _unless_conflict(
        request,
        item_id,
        session,
        workflow.release_for(item_id, admin=session.user.username),
        queries=queries,
        pages=pages,
    )
    if refused is not None:
        return refused
    return _to_item(item_id)


@router.post("/items/{item_id}/assign", include_in_schema=False)
async def assign(
    request: Request,
    item_id: int,
    session: SessionDep,
    *,
    workflow: WorkflowDep,
    queries: QueriesDep,
    pages: PagesDep,
    auth: AuthDep,
    to: Annotated[str, Form(max_length=80)],
) -> Response:
    """An admin gives the item's claim to a reviewer."""
    require(session, Action.ADMIN)
    if to not in await assignable(auth):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{to!r} is not an active user who reviews"
        )
    refused = await _unless_conflict(
        request,
        item_id,
        session,
        workflow.assign(item_id, to=to, admin=session.user.username),
        queries=queries,
        pages=pages,
    )
    if refused is not None:
        return refused
    return _to_item(item_id)


async def assignable(auth: AuthDep) -> list[str]:
    """The users an admin may assign an item to: active, and allowed to review."""
    return [
        u.username for u in await auth.list_users() if not u.disabled and can(u.role, Action.REVIEW)
    ]
