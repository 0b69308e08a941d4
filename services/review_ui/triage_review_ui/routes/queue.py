"""The open review queue: the page, its JSON API, and the way to the next item."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BeforeValidator, Field

from triage_review_ui.deps import PagesDep, QueriesDep, SessionDep, SettingsDep, require
from triage_review_ui.domain import QueueView, no_blank, queue_filter
from triage_review_ui.queries import SHOWN_REASONS, QueueOrder, SortKey
from triage_runtime.accounts.credentials import Action

MAX_OFFSET = 1_000_000
MAX_API_LIMIT = 500
FilterText = Annotated[str | None, Query(max_length=100)]
SearchText = Annotated[
    str | None,
    Query(max_length=200, description="Words to find in the text, email subject, sender, name."),
]
# The queue form sends "age=" when the field is left empty, as it is by default.
AgeHours = Annotated[
    Annotated[float, Field(ge=0, le=24 * 365 * 10)] | None,
    BeforeValidator(no_blank),
    Query(description="Only items older than this (hours)."),
]
Sort = Annotated[
    SortKey | None, BeforeValidator(no_blank), Query(description="Column to sort by (due).")
]
Direction = Annotated[str, Query(pattern="^(asc|desc)$", description="Sort direction.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Escalated = Annotated[bool, Query(description="Only items someone escalated.")]

router = APIRouter()


@router.get("/", response_class=HTMLResponse, summary="The open review queue")
async def queue(
    request: Request,
    session: SessionDep,
    queries: QueriesDep,
    pages: PagesDep,
    settings: SettingsDep,
    *,
    q: SearchText = None,
    reason: FilterText = None,
    label: FilterText = None,
    source: FilterText = None,
    age: AgeHours = None,
    escalated: Escalated = False,
    sort: Sort = None,
    dir: Direction = "asc",
    offset: Offset = 0,
) -> Response:
    require(session, Action.REVIEW)
    flt = queue_filter(reason, label, source, age, q, escalated=escalated)
    order = QueueOrder(sort or SortKey.DUE, dir == "desc")
    result = await queries.open_queue(limit=settings.page_size, flt=flt, offset=offset, order=order)
    view = QueueView(flt=flt, order=order, offset=offset, page_size=settings.page_size)
    return pages.render(
        request,
        "queue.html",
        session,
        page=result,
        flt=flt,
        offset=offset,
        view=view,
        reasons=SHOWN_REASONS,
    )


@router.get("/api/v1/review-items", summary="The open review queue as JSON, a page at a time")
async def queue_json(
    request: Request,
    session: SessionDep,
    queries: QueriesDep,
    settings: SettingsDep,
    *,
    q: SearchText = None,
    reason: FilterText = None,
    label: FilterText = None,
    source: FilterText = None,
    age: AgeHours = None,
    escalated: Escalated = False,
    sort: Sort = None,
    dir: Direction = "asc",
    offset: Offset = 0,
    limit: Annotated[int | None, Query(ge=1, le=MAX_API_LIMIT)] = None,
) -> dict[str, Any]:
    """Open items matching the filters; ``next`` is this page's address moved on, or null."""
    require(session, Action.REVIEW)
    limit = limit or settings.page_size
    result = await queries.open_queue(
        limit=limit,
        flt=queue_filter(reason, label, source, age, q, escalated=escalated),
        offset=offset,
        order=QueueOrder(sort or SortKey.DUE, dir == "desc"),
    )
    following = None
    if result.rows and offset + len(result.rows) < result.matching:
        moved = request.url.include_query_params(offset=offset + limit, limit=limit)
        following = f"{moved.path}?{moved.query}"
    return {
        "total_open": result.total_open,
        "matching": result.matching,
        "total": result.matching,
        "offset": offset,
        "limit": limit,
        "next": following,
        "by_reason": result.by_reason,
        "items": [asdict(r) for r in result.rows],
    }


@router.get("/next", include_in_schema=False)
async def next_item(session: SessionDep, queries: QueriesDep) -> Response:
    require(session, Action.REVIEW)
    item_id = await queries.first_open()
    return RedirectResponse(f"/items/{item_id}" if item_id else "/", status.HTTP_303_SEE_OTHER)
