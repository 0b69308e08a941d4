"""The open review queue: the page, its JSON API, and the way to the next item."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from triage_review_ui.deps import PagesDep, QueriesDep, SessionDep, SettingsDep, require
from triage_review_ui.domain import queue_filter
from triage_runtime.accounts.credentials import Action

MAX_OFFSET = 1_000_000
FilterText = Annotated[str | None, Query(max_length=100)]
AgeHours = Annotated[
    float | None, Query(ge=0, le=24 * 365 * 10, description="Only items older than this (hours).")
]
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
    reason: FilterText = None,
    label: FilterText = None,
    source: FilterText = None,
    age: AgeHours = None,
    escalated: Escalated = False,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Response:
    require(session, Action.REVIEW)
    flt = queue_filter(reason, label, source, age, escalated=escalated)
    result = await queries.open_queue(limit=settings.page_size, flt=flt, offset=offset)
    return pages.render(request, "queue.html", session, page=result, flt=flt, offset=offset)


@router.get("/api/v1/review-items", summary="The open review queue as JSON")
async def queue_json(
    session: SessionDep,
    queries: QueriesDep,
    settings: SettingsDep,
    *,
    reason: FilterText = None,
    label: FilterText = None,
    source: FilterText = None,
    age: AgeHours = None,
    escalated: Escalated = False,
) -> dict[str, Any]:
    require(session, Action.REVIEW)
    result = await queries.open_queue(
        limit=settings.page_size,
        flt=queue_filter(reason, label, source, age, escalated=escalated),
    )
    return {
        "total_open": result.total_open,
        "matching": result.matching,
        "by_reason": result.by_reason,
        "items": [asdict(r) for r in result.rows],
    }


@router.get("/next", include_in_schema=False)
async def next_item(session: SessionDep, queries: QueriesDep) -> Response:
    require(session, Action.REVIEW)
    item_id = await queries.first_open()
    return RedirectResponse(f"/items/{item_id}" if item_id else "/", status.HTTP_303_SEE_OTHER)
