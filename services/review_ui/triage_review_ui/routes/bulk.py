"""Deciding every open item that matches the queue's filters, after a count confirmation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response

from triage_review_ui.deps import (
    PagesDep,
    QueriesDep,
    SessionDep,
    SettingsDep,
    WorkflowDep,
    require,
)
from triage_review_ui.domain import QueueView, queue_filter
from triage_review_ui.queries import QueueOrder
from triage_review_ui.routes.queue import AgeHours, Escalated, FilterText, SearchText
from triage_runtime.accounts.credentials import Action

MAX_MATCHING = 5_000
"""The most items one "decide all matching" takes (each is claimed and decided in turn)."""

router = APIRouter()


@router.post("/bulk-decide-matching", response_class=HTMLResponse, include_in_schema=False)
async def bulk_decide_matching(
    request: Request,
    session: SessionDep,
    *,
    queries: QueriesDep,
    workflow: WorkflowDep,
    pages: PagesDep,
    settings: SettingsDep,
    label: Annotated[str, Form()],
    confirm: Annotated[int | None, Form(ge=0)] = None,
    q: SearchText = None,
    reason: FilterText = None,
    source: FilterText = None,
    age: AgeHours = None,
    filter_label: FilterText = None,
    escalated: Escalated = False,
) -> Response:
    """Without ``confirm``: the count to confirm. With it: decide them, if still that many."""
    require(session, Action.REVIEW)
    if label not in settings.labels:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{label!r} is not a queue")
    flt = queue_filter(reason, filter_label, source, age, q, escalated=escalated)
    view = QueueView(flt=flt, order=QueueOrder(), offset=0, page_size=settings.page_size)
    ids = await queries.matching_ids(flt, limit=MAX_MATCHING + 1)
    if len(ids) > MAX_MATCHING:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"More than {MAX_MATCHING:,} items match: narrow the filters to decide them at once.",
        )
    if not ids:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "No open item matches these filters now."
        )
    if confirm != len(ids):
        return pages.render(
            request,
            "bulk_confirm.html",
            session,
            count=len(ids),
            changed=confirm is not None,
            label=label,
            view=view,
            action=bulk_url(view),
        )
    result = await workflow.bulk_decide(ids, reviewer=session.user.username, label=label)
    return pages.render(request, "bulk.html", session, result=result, label=label)


def bulk_url(view: QueueView) -> str:
    """Where "decide all matching" posts for ``view``: its filters in the query string.

    The queue's own ``label`` filter is sent as ``filter_label``: the form's ``label`` is the
    queue the items are decided into.
    """
    return view.url("/bulk-decide-matching", label_param="filter_label")
