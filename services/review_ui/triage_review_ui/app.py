"""Review UI: ops staff sign in, work the review queue, decide, and watch the dashboard.

Server-rendered pages (Jinja2, autoescaped), a hand-written stylesheet and script, sessions in
PostgreSQL, a CSRF token on every form, roles checked on the server for every action.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from triage_contracts import DocumentRoutedV1, ReviewDecisionV1, topics, utcnow
from triage_review_ui.metrics import DECISIONS, OLDEST_AGE_SECONDS, OPEN_ITEMS, OVERDUE_ITEMS
from triage_review_ui.queries import QueueFilter, ReviewQueries
from triage_review_ui.settings import Settings
from triage_runtime.accounts.credentials import Action, can, verify_csrf
from triage_runtime.accounts.store import AuthStore, RateLimitedError, SessionInfo
from triage_runtime.blobstore import BlobStore
from triage_runtime.db.engine import database_reachable, make_async_engine
from triage_runtime.kafka import make_broker, publish_event
from triage_runtime.metrics import EVENTS_PRODUCED, topic_family
from triage_runtime.ops import ops_router
from triage_runtime.outcomes.review import ReviewWorkflow, WorkflowError
from triage_runtime.service import producer_for
from triage_text.pool import ExtractionLimits, ExtractionPool

SERVICE = "review-ui"
# Bounded label values for the queue gauges (the router's review reasons).
REASONS = ("low_confidence", "extraction_failed", "encrypted", "model_unavailable")
COOKIE = "triage_session"
MAX_OFFSET = 1_000_000
FilterText = Annotated[str | None, Query(max_length=100)]
AgeHours = Annotated[
    float | None, Query(ge=0, le=24 * 365 * 10, description="Only items older than this (hours).")
]
HERE = Path(__file__).parent
log = logging.getLogger(__name__)


class LoginRequiredError(Exception):
    """The request needs a signed-in user."""


def _due_in(due_at: Any) -> str:
    minutes = int((due_at - utcnow()).total_seconds() // 60)
    if minutes < 0:
        return f"overdue {-minutes // 60}h {-minutes % 60}m"
    return f"due in {minutes // 60}h {minutes % 60}m"


async def current_session(request: Request) -> SessionInfo:
    """The signed-in user's session, or a redirect to the login page."""
    token = request.cookies.get(COOKIE)
    store: AuthStore = request.app.state.auth
    found = await store.session_user(token) if token else None
    if found is None:
        raise LoginRequiredError
    return found


SessionDep = Annotated[SessionInfo, Depends(current_session)]


def require(session: SessionInfo, action: Action) -> None:
    """Refuse (403) an action the user's role does not allow."""
    if not can(session.user.role, action):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "your role does not allow this")


def check_csrf(session: SessionInfo, presented: str | None) -> None:
    """Refuse (403) a form whose CSRF token is not this session's."""
    if not verify_csrf(session.csrf_token, presented):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form's CSRF token is missing or stale")


def count_decision(model_version: str, model_role: str, agreed: bool) -> None:
    """Count a reviewer's decision on a scored item: did they agree with the model?"""
    DECISIONS.labels(model_version, model_role, "agreed" if agreed else "overridden").inc()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the review UI; the database and Kafka connect only when it starts."""
    settings = settings or Settings()
    producer = producer_for(SERVICE, "triage-review-ui")
    engine = make_async_engine(settings.database_url)
    broker = make_broker(settings.kafka_bootstrap, client_id="triage-review-ui")
    queries = ReviewQueries(engine)
    auth = AuthStore(engine)
    blobs = settings.open_blob_store()
    # Documents are shown re-extracted, with limits: a hostile one costs a killed worker.
    pool = ExtractionPool(
        workers=1,
        limits=ExtractionLimits(
            timeout_seconds=settings.extraction_timeout_seconds,
            memory_bytes=settings.extraction_memory_bytes,
            max_bytes=settings.max_document_bytes,
        ),
    )
    workflow = ReviewWorkflow(
        engine,
        labels=settings.labels,
        lease=timedelta(minutes=settings.lease_minutes),
        producer=producer,
        on_decided=count_decision,
    )
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["due_in"] = _due_in
    templates.env.globals["labels"] = settings.labels

    async def publish(topic: str, event: ReviewDecisionV1 | DocumentRoutedV1) -> None:
        await publish_event(broker, topic, event)
        family = topic_family(topic.removeprefix(settings.topic_prefix))
        EVENTS_PRODUCED.labels(SERVICE, family).inc()

    async def relay() -> None:
        while True:
            try:
                await workflow.publish_pending(
                    publish,
                    decisions_topic=settings.topic(topics.REVIEW_DECISIONS),
                    routed_topic=lambda q: settings.topic(topics.routed_topic(q)),
                )
            except Exception:
                log.exception("publishing review decisions failed; retrying")
            await asyncio.sleep(settings.publish_interval_seconds)

    async def gauges() -> None:
        while True:
            try:
                stats = await queries.dashboard()
                for reason in REASONS:
                    OPEN_ITEMS.labels(reason).set(stats.by_reason.get(reason, 0))
                OLDEST_AGE_SECONDS.set((stats.oldest_age_hours or 0.0) * 3600)
                OVERDUE_ITEMS.set(stats.overdue)
            except Exception:
                log.exception("could not refresh the review queue gauges")
            await asyncio.sleep(settings.gauge_interval_seconds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)
            await stack.enter_async_context(pool)
            await broker.start()
            stack.push_async_callback(broker.stop)
            tasks = [
                asyncio.create_task(relay(), name="decision-relay"),
                asyncio.create_task(gauges(), name="queue-gauges"),
            ]
            yield
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        log.info("stopped cleanly")

    async def database_ready() -> bool:
        return await database_reachable(engine)

    async def kafka_ready() -> bool:
        return await broker.ping(timeout=2.0)

    app = FastAPI(
        title="Triage review",
        summary="The human review queue.",
        version=producer.version,
        lifespan=lifespan,
    )
    app.state.auth = auth
    app.include_router(
        ops_router(
            service=SERVICE,
            checks={"database": database_ready, "kafka": kafka_ready},
            metrics_token=settings.metrics_token,
        )
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(LoginRequiredError)
    async def to_login(request: Request, _exc: LoginRequiredError) -> Response:
        if request.url.path.startswith("/api/"):
            return Response(status_code=status.HTTP_401_UNAUTHORIZED)
        return RedirectResponse(f"/login?next={request.url.path}", status.HTTP_303_SEE_OTHER)

    def page(request: Request, name: str, session: SessionInfo | None, **context: Any) -> Response:
        return templates.TemplateResponse(
            request, name, {"session": session, "settings": settings, **context}
        )

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_form(request: Request, next: str = "/") -> Response:
        return page(request, "login.html", None, next=next, error=None)

    @app.post("/login", include_in_schema=False)
    async def login(
        request: Request,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        remote = request.client.host if request.client else "unknown"
        try:
            user = await auth.authenticate(username, password, remote)
        except RateLimitedError as exc:
            response = page(request, "login.html", None, next=next, error=str(exc))
            response.status_code = status.HTTP_429_TOO_MANY_REQUESTS
            return response
        if user is None:
            response = page(
                request, "login.html", None, next=next, error="wrong user name or password"
            )
            response.status_code = status.HTTP_401_UNAUTHORIZED
            return response
        token, _csrf = await auth.start_session(user.id, timedelta(hours=settings.session_hours))
        await auth.audit(user.username, "login")
        target = next if _local_path(next) else "/"
        response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(settings.session_hours * 3600),
            httponly=True,
            samesite="strict",
            secure=settings.cookie_secure,
        )
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(
        request: Request, session: SessionDep, csrf: Annotated[str, Form()] = ""
    ) -> Response:
        check_csrf(session, csrf)
        token = request.cookies.get(COOKIE)
        if token:
            await auth.end_session(token)
        await auth.audit(session.user.username, "logout")
        response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
        response.delete_cookie(COOKIE)
        return response

    def _filter(
        reason: str | None, label: str | None, source: str | None, age: float | None
    ) -> QueueFilter:
        return QueueFilter(
            reason=reason or None, label=label or None, source=source or None, min_age_hours=age
        )

    @app.get("/", response_class=HTMLResponse, summary="The open review queue")
    async def queue(
        request: Request,
        session: SessionDep,
        *,
        reason: FilterText = None,
        label: FilterText = None,
        source: FilterText = None,
        age: AgeHours = None,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> Response:
        require(session, Action.REVIEW)
        flt = _filter(reason, label, source, age)
        result = await queries.open_queue(limit=settings.page_size, flt=flt, offset=offset)
        return page(request, "queue.html", session, page=result, flt=flt, offset=offset)

    @app.get("/api/v1/review-items", summary="The open review queue as JSON")
    async def queue_json(
        session: SessionDep,
        reason: FilterText = None,
        label: FilterText = None,
        source: FilterText = None,
        age: AgeHours = None,
    ) -> dict[str, Any]:
        require(session, Action.REVIEW)
        result = await queries.open_queue(
            limit=settings.page_size, flt=_filter(reason, label, source, age)
        )
        return {
            "total_open": result.total_open,
            "matching": result.matching,
            "by_reason": result.by_reason,
            "items": [asdict(r) for r in result.rows],
        }

    @app.get("/next", include_in_schema=False)
    async def next_item(session: SessionDep) -> Response:
        require(session, Action.REVIEW)
        item_id = await queries.first_open()
        return RedirectResponse(f"/items/{item_id}" if item_id else "/", status.HTTP_303_SEE_OTHER)

    @app.get("/items/{item_id}", response_class=HTMLResponse, include_in_schema=False)
    async def item_page(request: Request, item_id: int, session: SessionDep) -> Response:
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
        text = await _document_text(blobs, pool, item)
        probabilities = sorted(
            (item.probabilities or {}).items(), key=lambda kv: kv[1], reverse=True
        )[:5]
        return page(
            request,
            "item.html",
            session,
            item=item,
            text=text,
            probabilities=probabilities,
            claim_error=claim_error,
            previous_id=await queries.neighbour(item_id, after=False),
            next_id=await queries.neighbour(item_id, after=True),
        )

    @app.get("/items/{item_id}/document", include_in_schema=False)
    async def item_document(item_id: int, session: SessionDep) -> Response:
        require(session, Action.REVIEW)
        item = await queries.item(item_id)
        if item is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such review item")
        data = await asyncio.to_thread(blobs.get, item.blob_sha256)
        inline = item.media_type == "application/pdf"
        media_type = item.media_type if inline else "application/octet-stream"
        disposition = "inline" if inline else "attachment"
        headers = {
            "Content-Disposition": f'{disposition}; filename="document-{item_id}"',
            "X-Content-Type-Options": "nosniff",
        }
        if not inline:
            # Anything but a PDF is only ever downloaded; never let a browser run it here.
            headers["Content-Security-Policy"] = "sandbox"
        return Response(data, media_type=media_type, headers=headers)

    @app.post("/items/{item_id}/decide", include_in_schema=False)
    async def decide(
        item_id: int,
        session: SessionDep,
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

    @app.post("/items/{item_id}/release", include_in_schema=False)
    async def release(
        item_id: int, session: SessionDep, csrf: Annotated[str, Form()] = ""
    ) -> Response:
        require(session, Action.REVIEW)
        check_csrf(session, csrf)
        await workflow.release(item_id, reviewer=session.user.username)
        return RedirectResponse("/", status.HTTP_303_SEE_OTHER)

    @app.post("/bulk-decide", include_in_schema=False)
    async def bulk_decide(
        request: Request,
        session: SessionDep,
        label: Annotated[str, Form()],
        item_ids: Annotated[list[int], Form(alias="item_id")],
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        require(session, Action.REVIEW)
        check_csrf(session, csrf)
        if label not in settings.labels:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{label!r} is not a queue")
        result = await workflow.bulk_decide(item_ids, reviewer=session.user.username, label=label)
        return page(request, "bulk.html", session, result=result, label=label)

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    async def audit_page(request: Request, session: SessionDep) -> Response:
        require(session, Action.REVIEW)
        rows, per_reviewer = await queries.audit()
        return page(request, "audit.html", session, rows=rows, per_reviewer=per_reviewer)

    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard(request: Request, session: SessionDep) -> Response:
        require(session, Action.REVIEW)
        return page(request, "dashboard.html", session, stats=await queries.dashboard())

    @app.get("/admin/users", response_class=HTMLResponse, include_in_schema=False)
    async def users_page(request: Request, session: SessionDep) -> Response:
        require(session, Action.ADMIN)
        return page(request, "users.html", session, users=await auth.list_users(), error=None)

    @app.post("/admin/users", include_in_schema=False)
    async def add_user(
        request: Request,
        session: SessionDep,
        *,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        role: Annotated[str, Form()],
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        require(session, Action.ADMIN)
        check_csrf(session, csrf)
        try:
            await auth.create_user(username, password, role)
        except (ValueError, RuntimeError) as exc:
            response = page(
                request, "users.html", session, users=await auth.list_users(), error=str(exc)
            )
            response.status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
            return response
        await auth.audit(session.user.username, "add_user", detail={"username": username})
        return RedirectResponse("/admin/users", status.HTTP_303_SEE_OTHER)

    @app.post("/admin/users/{username}/{change}", include_in_schema=False)
    async def change_user(
        username: str, change: str, session: SessionDep, csrf: Annotated[str, Form()] = ""
    ) -> Response:
        require(session, Action.ADMIN)
        check_csrf(session, csrf)
        if change == "disable":
            await auth.disable_user(username)
        elif change == "enable":
            await auth.enable_user(username)
        else:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown change")
        await auth.audit(session.user.username, f"{change}_user", detail={"username": username})
        return RedirectResponse("/admin/users", status.HTTP_303_SEE_OTHER)

    return app


def _local_path(target: str) -> bool:
    """Whether a post-login redirect stays on this site (no scheme, host, or //, /\\ tricks)."""
    return target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target


async def _document_text(blobs: BlobStore, pool: ExtractionPool, item: Any) -> str | None:
    """The document's extracted text for the item page (shown escaped), or None."""
    # Only documents the classifier could read: re-extracting one that failed (a PDF over
    # its time or memory limit, say) would tie up this web process for nothing.
    if item.extraction_status != "ok":
        return None
    try:
        data = await asyncio.to_thread(blobs.get, item.blob_sha256)
    except Exception:  # noqa: BLE001 - a missing blob must not break the page
        return None
    extracted = await pool.extract(data, item.media_type)
    return extracted.text[:50_000] if extracted.text else None
