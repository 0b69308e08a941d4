"""One review item: its page (claiming it), its document, and deciding or releasing it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from triage_review_ui.deps import (
    DocumentsDep,
    PagesDep,
    QueriesDep,
    SessionDep,
    SettingsDep,
    WorkflowDep,
    check_csrf,
    require,
)
from triage_review_ui.domain import sent_as, top_probabilities
from triage_review_ui.routes.history import history_context
from triage_runtime.accounts.credentials import Action
from triage_runtime.outcomes.review import WorkflowError

router = APIRouter()


@router.get("/items/{item_id}", response_class=HTMLResponse, include_in_schema=False)
async def item_page(
    request: Request,
    item_id: int,
    session: SessionDep,
    *,
    queries: QueriesDep,
    workflow: WorkflowDep,
    documents: DocumentsDep,
    pages: PagesDep,
    settings: SettingsDep,
) -> Response:
    require(session, Action.REVIEW)
    item = await queries.item(item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such review item")
    claim_error = None
    if item.status != "decided":
        try:
            await workflow.claim(item_id, reviewer=session.user.username)
            item = await queries.item(item_id) or item
        except WorkflowError as exc:
            claim_error = str(exc)
    text = await documents.text(item)
    return pages.render(
        request,
        "item.html",
        session,
        item=item,
        text=text,
        ranking=[label for label, _ in top_probabilities(item.probabilities)],
        claim_error=claim_error,
        previous_id=await queries.neighbour(item_id, after=False),
        next_id=await queries.neighbour(item_id, after=True),
        **await history_context(item, session, queries, settings),
    )


@router.get("/items/{item_id}/document", include_in_schema=False)
async def item_document(
    item_id: int, session: SessionDep, queries: QueriesDep, documents: DocumentsDep
) -> Response:
    require(session, Action.REVIEW)
    item = await queries.item(item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such review item")
    data = await documents.data(item)
    media_type, headers = sent_as(item_id, item.media_type)
    return Response(data, media_type=media_type, headers=headers)


@router.post("/items/{item_id}/decide", include_in_schema=False)
async def decide(
    item_id: int,
    session: SessionDep,
    *,
    queries: QueriesDep,
    workflow: WorkflowDep,
    label: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    require(session, Action.REVIEW)
    check_csrf(session, csrf)
    try:
        await workflow.decide(item_id, reviewer=session.user.username, label=label, note=note)
    except WorkflowError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    following = await queries.neighbour(item_id, after=True) or await queries.first_open()
    target = f"/items/{following}" if following else "/"
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@router.post("/items/{item_id}/release", include_in_schema=False)
async def release(
    item_id: int, session: SessionDep, workflow: WorkflowDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    require(session, Action.REVIEW)
    check_csrf(session, csrf)
    await workflow.release(item_id, reviewer=session.user.username)
    return RedirectResponse("/", status.HTTP_303_SEE_OTHER)


@router.post("/bulk-decide", include_in_schema=False)
async def bulk_decide(
    request: Request,
    session: SessionDep,
    *,
    workflow: WorkflowDep,
    pages: PagesDep,
    settings: SettingsDep,
    label: Annotated[str, Form()],
    item_ids: Annotated[list[int], Form(alias="item_id")],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    require(session, Action.REVIEW)
    check_csrf(session, csrf)
    if label not in settings.labels:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{label!r} is not a queue")
    result = await workflow.bulk_decide(item_ids, reviewer=session.user.username, label=label)
    return pages.render(request, "bulk.html", session, result=result, label=label)
