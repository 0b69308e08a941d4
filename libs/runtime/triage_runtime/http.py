"""HTTP pieces shared by the services."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triage_runtime import tracing
from triage_runtime.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

# Any other method a client makes up is counted as "other": label values stay a bounded set.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
NO_ANSWER = "none"


class RequestMetrics:
    """Count every HTTP answer by method, route template and status, and time it; and make
    each request's span (``tracing.serving``: recorded only when tracing is on).

    Added last in ``create_app``, so it runs first: it sees the answers middleware sends
    before any route runs (401, 413, 429, 503) and counts an unhandled error as the 500
    Starlette answers with. A request the client left before any answer is ``none``.
    """

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self._app = app
        self._service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, watching the status it is answered with."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = NO_ANSWER
        method = scope.get("method", "")
        method = method if method in METHODS else "other"

        async def watched(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = str(message["status"])
            await send(message)

        with tracing.serving(method, scope.get("path", ""), scope.get("headers") or ()) as span:
            try:
                await self._app(scope, receive, watched)
            except Exception:
                if answered == NO_ANSWER:
                    answered = "500"  # what Starlette's outermost error middleware sends
                raise
            finally:
                route = route_template(scope, getattr(scope.get("app"), "routes", ()))
                tracing.answered(span, method=method, route=route, status=answered)
                HTTP_REQUESTS.labels(self._service, method, route, answered).inc()
                HTTP_REQUEST_SECONDS.labels(self._service, method, route).observe(
                    time.perf_counter() - started
                )


def route_template(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The path template of the route a request is for (``/v1/documents/{document_id}``),
    as routing would choose it; ``unmatched`` when no route has its path."""
    partial = None
    for route in iter_route_contexts(routes):  # included routers' routes too
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route.path or UNMATCHED
        if match is Match.PARTIAL and partial is None:  # the path, another method: 405
            partial = route.path
    return partial or UNMATCHED


class RequestBodyLimit:
    """Refuse request bodies over a limit while they stream in, before they reach a handler."""

    def __init__(self, app: ASGIApp, *, limit: Callable[[], int]) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting its body; answer 413 once it exceeds the limit."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self._limit()
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_413(send, limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, _too_large(limit))
            return message

        await self._app(scope, counted, send)


def _too_large(limit: int) -> str:
    return f"request body is larger than the {limit}-byte limit"


async def _send_413(send: Send, limit: int) -> None:
    await send_error(send, 413, _too_large(limit), retry_after=None)


class ConcurrencyLimit:
    """At most ``limit`` requests at once on some routes; the rest get 503 at once.

    The refusal is sent before the request body is read, so overload never grows memory;
    ``Retry-After`` tells well-behaved clients when to come back.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: Callable[[], int],
        paths: tuple[str, ...],
        methods: tuple[str, ...] = ("POST",),
        retry_after_seconds: int = 1,
        on_reject: Callable[[], None] | None = None,
    ) -> None:
        self._app = app
        self._limit = limit
        self._paths = paths
        self._methods = methods
        self._retry_after = retry_after_seconds
        self._on_reject = on_reject
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request in, or refuse it with 503 when the limit is reached."""
        if (
            scope["type"] != "http"
            or scope.get("method") not in self._methods
            or scope.get("path") not in self._paths
        ):
            await self._app(scope, receive, send)
            return
        if self.in_flight >= self._limit():
            if self._on_reject is not None:
                self._on_reject()
            await send_error(
                send,
                503,
                "the service is at its limit of concurrent uploads; retry shortly",
                retry_after=self._retry_after,
            )
            return
        self.in_flight += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def send_error(
    send: Send,
    code: int,
    detail: str,
    *,
    retry_after: int | None,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Answer a request with a JSON error straight from ASGI middleware (and close it, so an
    unread body is never read)."""
    sent = [(b"content-type", b"application/json"), (b"connection", b"close"), *headers]
    if retry_after is not None:
        sent.append((b"retry-after", str(retry_after).encode()))
    body = json.dumps({"detail": detail}).encode()
    sent.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": code, "headers": sent})
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """A token bucket per caller: ``per_minute`` requests a minute, bursts up to ``burst``."""

    def __init__(self, *, per_minute: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[object, tuple[float, float]] = {}

    def take(self, caller: object) -> float:
        """Take a token for ``caller``: 0.0 if allowed, else seconds until one is free."""
        now = self._clock()
        tokens, last = self._buckets.get(caller, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._buckets[caller] = (tokens - 1.0, now)
            return 0.0
        self._buckets[caller] = (tokens, now)
        return (1.0 - tokens) / self._rate if self._rate > 0 else float("inf")


async def internal_error(_request: Request, _exc: Exception) -> JSONResponse:
    """An unhandled error's 500 as the JSON refusal every other answer is (Starlette's own is
    plain text); the error is still raised on, so the server logs it with its traceback."""
    return JSONResponse({"detail": "internal error"}, status_code=500)


def app_state(name: str) -> Any:
    """A FastAPI dependency giving ``request.app.state.<name>``, as ``create_app`` set it:
    ``StoreDep = Annotated[IngestStore, app_state("store")]``."""

    async def read(request: Request) -> Any:
        return getattr(request.app.state, name)

    read.__name__ = f"app_state_{name}"
    return Depends(read)
