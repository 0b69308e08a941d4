"""An upload's body as it streams (``triage_ingest.body``): sizes refused the moment a limit
is passed, and bodies that stall or trickle cut off."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import HTTPException

from triage_ingest.body import BodyLimits, FormSizes, watched

BOUNDARY = b"unit-boundary"
LIMITS = BodyLimits(
    idle_seconds=0.5, min_bytes_per_second=0, max_file_bytes=1000, max_files=2, max_form_bytes=4000
)


def _part(name: str, content: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return (
        b"--" + BOUNDARY + f"\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content
    ) + b"\r\n"


def _form(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--" + BOUNDARY + b"--\r\n"


def _fed(body: bytes, *, chunk: int = 100) -> tuple[int, HTTPException | None]:
    """Feed ``body`` in chunks; the bytes fed when it was refused (or all), and the refusal."""
    sizes = FormSizes(BOUNDARY, LIMITS)
    for start in range(0, len(body), chunk):
        try:
            sizes.feed(body[start : start + chunk])
        except HTTPException as exc:
            return sizes.seen, exc
    return sizes.seen, None


def test_a_form_within_every_limit_passes() -> None:
    body = _form(
        _part("metadata", b'{"a": "b"}'),
        _part("files", b"x" * 1000, "a.txt"),
        _part("files", b"\r\n--unit-boundar" * 50, "b.txt"),  # near-boundaries are data
    )
    seen, refusal = _fed(body)
    assert (seen, refusal) == (len(body), None)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            _form(_part("files", b"x" * 1001 + b"y" * 50_000, "big.pdf")),
            "big.pdf is larger than the 1000-byte limit",
        ),
        (
            _form(*[_part("files", b"x", f"{i}.txt") for i in range(3)], _part("z", b"x" * 50_000)),
            "at most 2 files per request",
        ),
        (
            _form(_part("metadata", b"m" * 60_000)),
            "the form around the files is larger than 4000 bytes",
        ),
    ],
    ids=["one file over the per-file limit", "one file too many", "the form around the files"],
)
def test_a_limit_is_refused_in_the_chunk_that_passes_it(body: bytes, detail: str) -> None:
    seen, refusal = _fed(body)
    assert refusal is not None and refusal.status_code == 413
    assert refusal.detail == detail
    assert refusal.headers == {"Connection": "close"}
    # Refused within a chunk (and the parser's look-behind) of the limit, not at the end.
    assert seen <= 4000 + 200 < len(body)


def test_a_body_that_is_not_multipart_as_it_said_is_left_to_the_form_parser() -> None:
    seen, refusal = _fed(b"not a form at all\r\n--unit" * 100)
    assert refusal is None and seen == 2500


def _receiving(chunks: list[tuple[float, bytes]]) -> Any:
    """A ``receive`` that gives each chunk after its pause, the last one ending the body."""
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        pause, body = pending.pop(0)
        await asyncio.sleep(pause)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    return receive


def _read_all(receive: Any, limits: BodyLimits) -> tuple[int, float]:
    """Read a body through ``watched``; its bytes and seconds, or raise its refusal."""

    async def run() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        body = watched(receive, content_type=b"application/octet-stream", limits=limits)
        size = 0
        while True:
            message = await body()
            size += len(message["body"])
            if not message["more_body"]:
                return size, loop.time() - started

    return asyncio.run(run())


def test_a_trickle_under_the_minimum_rate_is_cut_off_though_no_gap_reaches_the_idle_timeout() -> (
    None
):
    limits = BodyLimits(
        idle_seconds=0.5, min_bytes_per_second=100, max_file_bytes=10**6, max_files=2
    )
    # 10 bytes every 0.2 s (50 B/s): due 0.5 s + 0.1 s per 10 bytes, so late after ~1 s.
    with pytest.raises(HTTPException) as refused:
        _read_all(_receiving([(0.2, b"x" * 10)] * 30), limits)
    assert refused.value.status_code == 408
    assert refused.value.detail == "the request body arrived slower than 100 bytes/s"
    # The same gaps with 40 bytes each (200 B/s) keep ahead of the allowance.
    size, took = _read_all(_receiving([(0.2, b"x" * 40)] * 8), limits)
    assert size == 320 and took >= 1.6


def test_a_stall_is_an_idle_timeout_and_no_minimum_rate_means_no_allowance() -> None:
    limits = BodyLimits(idle_seconds=0.3, min_bytes_per_second=0, max_file_bytes=100, max_files=1)
    with pytest.raises(HTTPException) as refused:
        _read_all(_receiving([(0.0, b"x"), (5.0, b"x")]), limits)
    assert refused.value.detail == "the request body stopped arriving for 0.3 s"
    # Without a minimum rate a slow body whose gaps stay under the idle timeout is read.
    size, _took = _read_all(_receiving([(0.2, b"x")] * 6), limits)
    assert size == 6
