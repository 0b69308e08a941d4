"""The upload API's door: who is calling, and whether they may start an upload now.

Runs as ASGI middleware on ``POST /v1/documents``, before any byte of the body is read.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triage_ingest.deps import UNAUTHORIZED
from triage_ingest.metrics import UPLOADS
from triage_runtime.apikeys import KeyHolder
from triage_runtime.http import send_error

KEY_BUSY_RETRY_SECONDS = 1


class UploadGate:
    """Check the API key from the headers and its rate, hold one of the key's upload slots,
    and cut off a body that stops arriving, so no client can hold a slot it does not use.

    Sits outside the service-wide ``ConcurrencyLimit``: a caller without a valid key, or a
    key already at its own limit, is answered before it takes a service slot.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        holder: Callable[[str | None], Awaitable[KeyHolder | None]],
        rate_wait: Callable[[KeyHolder], float],
        per_key_limit: Callable[[], int],
        body_idle_seconds: Callable[[], float],
        paths: tuple[str, ...],
    ) -> None:
        self._app = app
        self._holder = holder
        self._rate_wait = rate_wait
        self._per_key_limit = per_key_limit
        self._body_idle_seconds = body_idle_seconds
        self._paths = paths
        self.in_flight: Counter[int] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse (401, 429 over the key's rate or its concurrent uploads) or pass the upload
        on with its caller and a timed body."""
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or scope.get("path") not in self._paths
        ):
            await self._app(scope, receive, send)
            return
        key = dict(scope.get("headers") or []).get(b"x-api-key")
        holder = await self._holder(key.decode("latin-1") if key else None)
        if holder is None:
            UPLOADS.labels("unauthorized").inc()
            await send_error(
                send,
                401,
                UNAUTHORIZED,
                retry_after=None,
                headers=((b"www-authenticate", b"ApiKey"),),
            )
            return
        wait = self._rate_wait(holder)
        if wait > 0:
            UPLOADS.labels("rate_limited").inc()
            await send_error(
                send,
                429,
                "too many uploads for this API key; slow down",
                retry_after=max(1, math.ceil(wait)),
            )
            return
        if self.in_flight[holder.id] >= self._per_key_limit():
            UPLOADS.labels("key_busy").inc()
            await send_error(
                send,
                429,
                "this API key has as many uploads in progress as it may; retry when one ends",
                retry_after=KEY_BUSY_RETRY_SECONDS,
            )
            return
        scope.setdefault("state", {})["caller"] = holder
        self.in_flight[holder.id] += 1
        try:
            await self._app(scope, self._timed(receive), send)
        finally:
            self.in_flight[holder.id] -= 1
            if not self.in_flight[holder.id]:
                del self.in_flight[holder.id]

    def _timed(self, receive: Receive) -> Receive:
        """``receive``, but a body that sends nothing for the idle timeout is a 408."""
        idle = self._body_idle_seconds()
        body_done = False

        async def timed() -> Message:
            nonlocal body_done
            if body_done:  # after the body, only a disconnect can come: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), idle)
            except TimeoutError:
                UPLOADS.labels("body_timeout").inc()
                raise HTTPException(
                    status.HTTP_408_REQUEST_TIMEOUT,
                    f"the request body stopped arriving for {idle:g} s",
                    headers={"Connection": "close"},
                ) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return timed
