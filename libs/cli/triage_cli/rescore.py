"""Re-scoring documents read back from the documents topic, with the serving code.

``triage replay`` and ``triage batch score --topic-range`` both go through here: the
classifier's own extraction pool and ``triage_classifier.domain.classify``, so an offline
score is the score the classifier would give.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from triage_classifier import domain
from triage_contracts import (
    DocumentClassifiedV1,
    DocumentReceivedV1,
    ExtractionStatus,
    ModelRef,
    Producer,
)
from triage_ml.extraction_pool import ExtractionPool
from triage_ml.features import ExtractedText
from triage_ml.model import LoadedModel
from triage_runtime.blobstore import BlobNotFoundError, BlobStore
from triage_runtime.kafka import UnprocessableError, decode_event


@dataclass
class Rescored:
    """The new scores of a batch, and what could not be re-scored (by reason)."""

    events: list[DocumentClassifiedV1] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


async def scored_ahead(
    batches: AsyncIterator[list[Any]],
    score: Callable[[list[Any]], Coroutine[Any, Any, Rescored]],
) -> AsyncIterator[tuple[list[Any], Rescored]]:
    """Each batch with its new scores, the next batch scored while the caller handles this one.

    The model is the slow part; with one batch scored ahead it keeps working while the
    caller writes to PostgreSQL, publishes and commits. Batches come out in order.
    """
    tasks: list[asyncio.Task[Rescored]] = []  # every task made, so none outlives this
    ahead: tuple[list[Any], asyncio.Task[Rescored]] | None = None
    try:
        async for batch in batches:
            tasks.append(asyncio.create_task(score(batch)))
            previous, ahead = ahead, (batch, tasks[-1])
            if previous is not None:
                yield previous[0], await previous[1]
        if ahead is not None:
            yield ahead[0], await ahead[1]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def rescore(
    records: Sequence[Any],
    *,
    blobs: BlobStore,
    pool: ExtractionPool,
    model: LoadedModel,
    model_ref: ModelRef,
    producer: Producer,
    max_bytes: int,
) -> Rescored:
    """Decode, fetch, extract and score a batch of DocumentReceived records."""
    out = Rescored()
    received: list[tuple[DocumentReceivedV1, bytes | None]] = []
    for record in records:
        try:
            event = decode_event(record.value, DocumentReceivedV1)
        except UnprocessableError as exc:
            out.skipped[exc.error_class.value] += 1  # the classifier dead-lettered it already
            continue
        blob = event.document.blob
        if blob.size_bytes > max_bytes:
            received.append((event, None))
            continue
        try:
            data = await asyncio.to_thread(blobs.get, blob.sha256)
        except BlobNotFoundError:
            out.skipped["blob_missing"] += 1
            continue
        received.append((event, data))
    texts = iter(
        await pool.extract_many(
            [(data, ev.document.blob.media_type) for ev, data in received if data is not None]
        )
    )
    batch = [
        domain.Extracted(
            event,
            next(texts) if data is not None else ExtractedText(ExtractionStatus.TOO_LARGE),
        )
        for event, data in received
    ]
    out.events = await asyncio.to_thread(
        domain.classify, batch, model=model, model_ref=model_ref, producer=producer
    )
    return out
