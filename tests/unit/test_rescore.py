"""Re-scoring one batch ahead: order kept, the model busy while the caller works, no leaks;
the rate printed with and without start-up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.helpers import SlowBlobs, received
from triage_cli.rescore import Pace, Rescored, rescore, scored_ahead
from triage_contracts import ExtractionStatus
from triage_ml.scoring import DocumentReader
from triage_runtime.kafka import encode_event
from triage_text.pool import ExtractionPool


async def _batches(count: int) -> AsyncIterator[list[Any]]:
    for i in range(count):
        yield [i]


@pytest.mark.parametrize("ahead", [1, 3])
def test_batches_come_out_in_order_with_the_next_ones_scored_meanwhile(ahead: int) -> None:
    started: list[int] = []
    most_in_flight = 0

    async def score(batch: Sequence[Any]) -> Rescored:
        nonlocal most_in_flight
        started.append(batch[0])
        most_in_flight = max(most_in_flight, len(started) - len(out))
        await asyncio.sleep(0.01)
        return Rescored(skipped={f"batch {batch[0]}": 1})  # type: ignore[arg-type]

    out: list[tuple[int, list[str]]] = []

    async def run() -> None:
        async for batch, rescored in scored_ahead(_batches(6), score, ahead=ahead):
            # While the caller handles batch N, batches N+1 .. N+ahead are being scored.
            await asyncio.sleep(0)
            for later in range(batch[0] + 1, min(batch[0] + ahead, 5) + 1):
                assert later in started
            assert batch[0] + ahead + 1 not in started
            out.append((batch[0], list(rescored.skipped)))

    asyncio.run(run())
    assert out == [(i, [f"batch {i}"]) for i in range(6)]
    assert most_in_flight == ahead + 1


def test_leaving_early_cancels_the_batch_scored_ahead() -> None:
    cancelled: list[int] = []

    async def score(batch: Sequence[Any]) -> Rescored:
        try:
            await asyncio.sleep(0 if batch[0] == 0 else 10)
        except asyncio.CancelledError:
            cancelled.append(batch[0])
            raise
        return Rescored()

    async def run() -> None:
        stream = scored_ahead(_batches(3), score)
        async for batch, _ in stream:
            assert batch == [0]
            break
        await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(run())
    assert cancelled == [1]


def test_a_scoring_failure_reaches_the_caller() -> None:
    async def score(batch: Sequence[Any]) -> Rescored:
        if batch[0] == 1:
            raise RuntimeError("model failed")
        return Rescored()

    async def run() -> None:
        async for _ in scored_ahead(_batches(3), score):
            pass

    with pytest.raises(RuntimeError, match="model failed"):
        asyncio.run(run())


def test_a_failure_cancels_the_batch_scored_behind_it() -> None:
    cancelled: list[int] = []

    async def score(batch: Sequence[Any]) -> Rescored:
        if batch[0] == 1:
            await asyncio.sleep(0.01)
            raise RuntimeError("model failed")
        try:
            await asyncio.sleep(0 if batch[0] == 0 else 10)
        except asyncio.CancelledError:
            cancelled.append(batch[0])
            raise
        return Rescored()

    async def run() -> None:
        async for _ in scored_ahead(_batches(3), score):
            pass

    with pytest.raises(RuntimeError, match="model failed"):
        asyncio.run(run())
    assert cancelled == [2]


def test_the_pace_gives_the_rate_after_start_up_from_the_first_batch_on() -> None:
    async def read(pace: Pace) -> list[list[Any]]:
        return [batch async for batch in pace.watch(_batches(3))]

    pace = Pace()
    assert asyncio.run(read(pace)) == [[0], [1], [2]]
    assert pace.first_batch is not None and pace.first_batch >= pace.started

    now = time.perf_counter()
    pace = Pace(started=now - 10, first_batch=now - 8)
    assert pace.summary(800) == (
        "800 documents in 10.0 s (80.0 docs/s); 2.0 s to start, then 100.0 docs/s"
    )
    assert Pace(started=now - 4).summary(100) == "100 documents in 4.0 s (25.0 docs/s)"


def test_a_batch_fetches_its_blobs_at_once_and_counts_what_it_cannot_rescore(
    tmp_path: Path,
) -> None:
    blobs = SlowBlobs(tmp_path, pause=0.2)
    readable = [received(blobs.put(text)) for text in (b"invoice refund", b"server outage")]
    missing = received("cd" * 32)
    stored = received(blobs.put(b"x" * 64))
    blob = stored.document.blob.model_copy(update={"size_bytes": 64})
    too_large = stored.model_copy(
        update={"document": stored.document.model_copy(update={"blob": blob})}
    )
    values = [
        encode_event(readable[0]),
        b"{not json",
        encode_event(missing),
        encode_event(too_large),
        encode_event(readable[1]),
    ]
    # As records come from the topic (the consumer's span names the topic and offset).
    records = [
        SimpleNamespace(value=value, headers=[], topic="documents", partition=0, offset=offset)
        for offset, value in enumerate(values)
    ]
    batches: list[list[Any]] = []

    async def classify(batch: list[Any]) -> list[Any]:
        batches.append(batch)
        return []

    async def run() -> Rescored:
        async with ExtractionPool(workers=1) as pool:
            reader = DocumentReader(blobs=blobs, pool=pool, max_bytes=32)
            return await rescore(records, reader=reader, classify=classify)

    out = asyncio.run(run())

    [batch] = batches
    assert [item.received.document_id for item in batch] == [
        readable[0].document_id,
        too_large.document_id,
        readable[1].document_id,
    ]
    assert [item.text.status for item in batch] == [
        ExtractionStatus.OK,
        ExtractionStatus.TOO_LARGE,
        ExtractionStatus.OK,
    ]
    assert out.skipped == {"undecodable": 1, "blob_missing": 1}
    # Three reads (the oversized blob is never read) overlapped: one after another, one.
    assert blobs.most_at_once == 3
