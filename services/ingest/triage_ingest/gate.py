"""The upload API's door: who is calling, and whether they may start an upload now.

Runs as ASGI middleware on ``POST /v1/documents``, before any byte of the body is read.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from triage_ingest.body import BodyLimits, watched
from triage_ingest.deps import UNAUTHORIZED
from triage_ingest.metrics import UPLOADS
from triage_runtime.apikeys import KeyHolder
from triage_runtime.http import send_error

KEY_BUSY_RETRY_SECONDS = 1


class UploadGate:
    """Check the API key from the headers and its rate, hold one of the key's upload slots,
    and watch the body (``body.watched``): one that stalls or trickles is cut off, one that
    breaks a size limit refused as it streams, so no client holds a slot it does not use.

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
        body_limits: Callable[[], BodyLimits],
        paths: tuple[str, ...],
    ) -> None:
        self._app = app
        self._holder = holder
        self._rate_wait = rate_wait
        self._per_key_limit = per_key_limit
        self._body_limits = body_limits
        self._paths = paths
        self.in_flight: Counter[int] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse (401, 429 over the key's rate or its concurrent uploads) or pass the upload
        on with its caller and a watched body."""
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
            body = watched(
                receive,
                content_type=dict(scope.get("headers") or []).get(b"content-type"),
                limits=self._body_limits(),
            )
            await self._app(scope, body, send)
        finally:
            self.in_flight[holder.id] -= 1
            if not self.in_flight[holder.id]:
                del self.in_flight[holder.id]
