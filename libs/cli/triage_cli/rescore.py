"""Re-scoring documents read back from the documents topic, with the serving code.

``triage replay``, ``triage batch score --topic-range`` and ``triage drift report`` all go
through here (``topic_rescorer``): the classifier's own settings, extraction pool and
``triage_classifier.domain.classify``, so an offline score is the score the classifier
would give.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
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
from triage_ml.model_thread import ModelThread
from triage_runtime.blobstore import BlobNotFoundError, BlobStore
from triage_runtime.kafka import UnprocessableError, decode_event
from triage_runtime.topic_window import TopicWindow


@dataclass
class Rescored:
    """The new scores of a batch, and what could not be re-scored (by reason)."""

    events: list[DocumentClassifiedV1] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass
class Pace:
    """The rate of a topic read: overall, and once the first batch arrived.

    Opening the topic window, starting the extraction workers and connecting take a second
    or two before the first document; over a long window that is nothing, over a short one
    it hides the rate the re-scoring keeps up.
    """

    started: float = field(default_factory=time.perf_counter)
    first_batch: float | None = None

    async def watch(self, batches: AsyncIterator[list[Any]]) -> AsyncIterator[list[Any]]:
        """``batches`` unchanged, noting when the first one came."""
        async for batch in batches:
            if self.first_batch is None:
                self.first_batch = time.perf_counter()
            yield batch

    def summary(self, documents: int) -> str:
        """ "N documents in S s (R docs/s)", and the rate after start-up when there was one."""
        now = time.perf_counter()
        elapsed = now - self.started
        text = f"{documents} documents in {elapsed:.1f} s ({documents / elapsed:.1f} docs/s)"
        if self.first_batch is not None and now > self.first_batch:
            text += (
                f"; {self.first_batch - self.started:.1f} s to start, then "
                f"{documents / (now - self.first_batch):.1f} docs/s"
            )
        return text


@dataclass(frozen=True)
class TopicRescorer:
    """A window of the documents topic and the function that re-scores its batches."""

    window: TopicWindow
    score: Callable[[Sequence[Any]], Coroutine[Any, Any, Rescored]]


@asynccontextmanager
async def topic_rescorer(
    *,
    since: datetime,
    until: datetime | None,
    group_id: str,
    batch_size: int,
    model: LoadedModel,
    model_ref: ModelRef,
    producer: Producer,
) -> AsyncIterator[TopicRescorer]:
    """Open the documents topic between two times, an extraction pool and a model thread, all
    configured as the classifier's (``TRIAGE_CLASSIFIER_*``); close them after."""
    from triage_classifier.settings import Settings as ClassifierSettings
    from triage_contracts import topics
    from triage_ml.extraction_pool import ExtractionLimits

    settings = ClassifierSettings()
    window = TopicWindow(
        settings.kafka_bootstrap,
        settings.topic(topics.DOCUMENTS),
        since=since,
        until=until,
        group_id=group_id,
        batch_size=batch_size,
    )
    limits = ExtractionLimits(
        timeout_seconds=settings.extraction_timeout_seconds,
        memory_bytes=settings.extraction_memory_bytes,
        max_bytes=settings.max_document_bytes,
    )
    scoring = ModelThread(torch_threads=settings.torch_threads, name="rescoring")
    async with ExtractionPool(workers=settings.extraction_workers, limits=limits) as pool, window:
        try:
            yield TopicRescorer(
                window,
                partial(
                    rescore,
                    blobs=settings.open_blob_store(),
                    pool=pool,
                    scoring=scoring,
                    model=model,
                    model_ref=model_ref,
                    producer=producer,
                    max_bytes=settings.max_document_bytes,
                ),
            )
        finally:
            scoring.close()


async def scored_ahead(
    batches: AsyncIterator[list[Any]],
    score: Callable[[Sequence[Any]], Coroutine[Any, Any, Rescored]],
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
    scoring: ModelThread,
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
    out.events = await scoring.run(
        partial(domain.classify, batch, model=model, model_ref=model_ref, producer=producer)
    )
    return out
