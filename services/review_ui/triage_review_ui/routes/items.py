"""One review item: its page (looking claims nothing), its document, and deciding or
releasing it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from triage_review_ui.deps import (
    AuthDep,
    DocumentsDep,
    PagesDep,
    QueriesDep,
    SessionDep,
    SettingsDep,
    TextsDep,
    WorkflowDep,
    require,
)
from triage_review_ui.domain import (
    chosen,
    claim_state,
    decision_choices,
    sent_as,
    top_probabilities,
)
from triage_review_ui.routes.claims import assignable, conflict_page, following
from triage_review_ui.routes.history import history_context
from triage_runtime.accounts.credentials import Action, can
from triage_runtime.outcomes.review import ClaimConflictError, DecisionKind, WorkflowError

router = APIRouter()
NOTHING_TICKED = (
    "No item was ticked: tick the items to decide, or use “Decide all matching” for every item"
    " the filters match."
)


@router.get("/items/{item_id}", response_class=HTMLResponse, include_in_schema=False)
async def item_page(
    request: Request,
    item_id: int,
    session: SessionDep,
    *,
    queries: QueriesDep,
    texts: TextsDep,
    pages: PagesDep,
    settings: SettingsDep,
    auth: AuthDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    require(session, Action.REVIEW)
    item = await queries.item(item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such review item")
    text = await texts.text(item)
    highlighted = await texts.highlighted(item_id, q) if q and text else None
    admin = can(session.user.role, Action.ADMIN)
    return pages.render(
        request,
        "item.html",
        session,
        item=item,
        text=text,
        search=q,
        highlighted=highlighted,
        ranking=[label for label, _ in top_probabilities(item.probabilities)],
        claim=claim_state(item, session.user.username),
        choices=decision_choices(settings.labels, settings.other_queues),
        assignable=await assignable(auth) if admin else [],
        previous_id=await queries.neighbour(item_id, after=False),
        next_id=await queries.neighbour(item_id, after=True),
        mail=await queries.mail(item),
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
    request: Request,
    item_id: int,
    session: SessionDep,
    *,
    queries: QueriesDep,
    workflow: WorkflowDep,
    pages: PagesDep,
    label: Annotated[str, Form()],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Decide: a queue, or spam / not a document. A claim of one's own is not needed, only
    that nobody else holds a live one (a lapsed claim nobody took costs nothing)."""
    require(session, Action.REVIEW)
    choice = chosen(label)
    reviewer = session.user.username
    try:
        if isinstance(choice, DecisionKind):
            await workflow.discard(item_id, reviewer=reviewer, kind=choice, note=note)
        else:
            await workflow.decide(item_id, reviewer=reviewer, label=choice, note=note)
    except ClaimConflictError as exc:
        return await conflict_page(
            request, item_id, session, queries=queries, pages=pages, message=str(exc)
        )
    except WorkflowError as exc:
        if await queries.item(item_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such review item") from exc
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    after = await following(queries, item_id)
    target = f"/items/{after}" if after else "/"
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@router.post("/items/{item_id}/release", include_in_schema=False)
async def release(item_id: int, session: SessionDep, workflow: WorkflowDep) -> Response:
    require(session, Action.REVIEW)
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
    item_ids: Annotated[list[int] | None, Form(alias="item_id")] = None,
) -> Response:
    require(session, Action.REVIEW)
    if not item_ids:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, NOTHING_TICKED)
    if label not in settings.labels:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{label!r} is not a queue")
    result = await workflow.bulk_decide(item_ids, reviewer=session.user.username, label=label)
    return pages.render(request, "bulk.html", session, result=result, label=label)
