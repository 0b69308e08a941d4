"""The upload gate on its own: what it answers from the headers, and what it lets through."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from fastapi import HTTPException

from triage_ingest.body import BodyLimits
from triage_ingest.gate import UploadGate
from triage_runtime.apikeys import KeyHolder


def test_the_upload_gate_answers_from_the_headers_and_holds_one_slot_per_key() -> None:
    release = asyncio.Event()
    holders = {"tri_a": KeyHolder(1, "a"), "tri_b": KeyHolder(2, "b"), "tri_r": KeyHolder(3, "r")}

    async def holder(key: str | None) -> KeyHolder | None:
        return holders.get(key or "")

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await receive()  # the body, if it keeps coming
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": scope["state"]["caller"].name.encode()})

    gate = UploadGate(
        slow_app,
        holder=holder,
        rate_wait=lambda who: 3.2 if who.name == "r" else 0.0,  # key r is over its rate
        per_key_limit=lambda: 1,
        body_limits=lambda: BodyLimits(
            idle_seconds=0.2, min_bytes_per_second=0, max_file_bytes=100, max_files=1
        ),
        paths=("/v1/documents",),
    )

    async def call(key: str | None, *, stall: bool = False) -> tuple[int, bytes]:
        sent: list[MutableMapping[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            if key not in holders or key == "tri_r":
                raise AssertionError("a refused request must not read its body")
            if stall:
                await asyncio.sleep(10)
            return {"type": "http.request", "body": b"x", "more_body": False}

        headers = [(b"x-api-key", key.encode())] if key else []
        scope = {"type": "http", "method": "POST", "path": "/v1/documents", "headers": headers}
        try:
            await gate(scope, receive, send)
        except HTTPException as exc:
            return exc.status_code, b""
        return sent[0]["status"], dict(sent[0]["headers"]).get(b"retry-after", sent[-1]["body"])

    async def scenario() -> list[tuple[int, bytes]]:
        first = asyncio.create_task(call("tri_a", stall=True))
        await asyncio.sleep(0.01)  # key a now holds its one slot
        refused = [await call(k) for k in (None, "tri_wrong", "tri_a", "tri_r")]
        other = asyncio.create_task(call("tri_b"))
        await asyncio.sleep(0.01)
        release.set()
        return [*refused, await other, await first, await call("tri_a")]

    anonymous, wrong, busy, over_rate, other, stalled, again = asyncio.run(scenario())
    assert (anonymous[0], wrong[0], busy, over_rate) == (401, 401, (429, b"1"), (429, b"4"))
    assert other == (202, b"b") and again == (202, b"a")
    assert stalled[0] == 408
    assert not gate.in_flight
