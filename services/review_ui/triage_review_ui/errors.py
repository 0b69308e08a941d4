"""Errors as people see them: an HTML page with what went wrong and where to go next.

The JSON API (``/api/``) keeps FastAPI's JSON answers; every other path answers an error with
``error.html`` and the same status code, so a browser never shows a raw JSON body.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from triage_review_ui.deps import COOKIE
from triage_review_ui.pages import Pages
from triage_runtime.accounts.store import AuthStore, SessionInfo

TITLES = {
    status.HTTP_400_BAD_REQUEST: "That request could not be read",
    status.HTTP_403_FORBIDDEN: "Not allowed",
    status.HTTP_404_NOT_FOUND: "Not found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "Nothing to do at this address",
    status.HTTP_409_CONFLICT: "Someone or something got there first",
    status.HTTP_413_CONTENT_TOO_LARGE: "Too large",
    status.HTTP_422_UNPROCESSABLE_CONTENT: "Some of the form could not be used",
    status.HTTP_429_TOO_MANY_REQUESTS: "Too many attempts",
}


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _session(request: Request) -> SessionInfo | None:
    token = request.cookies.get(COOKIE)
    auth: AuthStore = request.app.state.auth
    return await auth.session_user(token) if token else None


def field_problems(exc: RequestValidationError) -> list[str]:
    """One plain sentence per unusable form or query field, e.g. "label: Field required"."""
    problems = []
    for error in exc.errors():
        where = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
        problems.append(f"{'.'.join(where) or 'request'}: {error.get('msg', 'not valid')}")
    return problems


async def _page(
    request: Request, code: int, detail: str, problems: list[str] | None = None
) -> Response:
    pages: Pages = request.app.state.pages
    response = pages.render(
        request,
        "error.html",
        await _session(request),
        code=code,
        title=TITLES.get(code, "Something went wrong"),
        detail=detail,
        problems=problems or [],
        back=request.headers.get("referer") or "/",
    )
    response.status_code = code
    return response


async def on_http_error(request: Request, exc: Exception) -> Response:
    """An HTTP error: JSON for the API, the error page for a person."""
    assert isinstance(exc, StarletteHTTPException)
    if _is_api(request):
        return await http_exception_handler(request, exc)
    detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
    response = await _page(request, exc.status_code, detail)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def on_invalid_request(request: Request, exc: Exception) -> Response:
    """A form or query that does not validate: JSON for the API, the error page for a person."""
    assert isinstance(exc, RequestValidationError)
    if _is_api(request):
        return await request_validation_exception_handler(request, exc)
    return await _page(
        request,
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        "Please go back, correct the form and send it again.",
        field_problems(exc),
    )


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` through the handlers above."""
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
