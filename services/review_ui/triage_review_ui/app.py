"""Review UI: the human review queue (read-only in this version)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from triage_contracts import utcnow
from triage_review_ui.queries import ReviewQueries
from triage_review_ui.settings import Settings
from triage_runtime.db.engine import database_reachable, make_async_engine
from triage_runtime.ops import ops_router
from triage_runtime.service import package_version

SERVICE = "review-ui"
log = logging.getLogger(__name__)
HERE = Path(__file__).parent


def _due_in(due_at: datetime, now: datetime) -> str:
    minutes = int((due_at - now).total_seconds() // 60)
    if minutes < 0:
        return f"overdue {-minutes // 60}h {-minutes % 60}m"
    return f"{minutes // 60}h {minutes % 60}m"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the review UI; the database connects on first use."""
    settings = settings or Settings()
    engine = make_async_engine(settings.database_url)
    queries = ReviewQueries(engine)
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["due_in"] = lambda d: _due_in(d, utcnow())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()
        log.info("stopped cleanly")

    async def database_ready() -> bool:
        return await database_reachable(engine)

    app = FastAPI(
        title="Triage review",
        summary="The human review queue.",
        version=package_version("triage-review-ui"),
        lifespan=lifespan,
    )
    app.include_router(ops_router(service=SERVICE, checks={"database": database_ready}))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/", response_class=HTMLResponse, summary="The open review queue")
    async def queue(request: Request) -> HTMLResponse:
        page = await queries.open_queue(limit=settings.page_size)
        return templates.TemplateResponse(
            request, "queue.html", {"page": page, "page_size": settings.page_size}
        )

    @app.get("/api/v1/review-items", summary="The open review queue as JSON")
    async def queue_json() -> dict[str, Any]:
        page = await queries.open_queue(limit=settings.page_size)
        return {
            "total_open": page.total_open,
            "by_reason": page.by_reason,
            "items": [asdict(r) for r in page.rows],
        }

    return app
