"""Re-scoring documents read back from the documents topic, with the serving pipeline.

``triage replay``, ``triage batch score --topic-range`` and ``triage drift report`` all go
through here (``topic_rescorer``): the classifier's settings and ``triage_ml.scoring``, the
pipeline the classifier itself runs, so an offline score is the score the classifier gives
and a document it cannot read fails here as it fails there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from triage_contracts import (
    DocumentClassifiedV1,
    DocumentRef,
    ModelRef,
    Producer,
)
from triage_ml import scoring
from triage_ml.model import LoadedModel
from triage_ml.model_thread import ModelThread
from triage_ml.scoring_processes import ScoringProcesses
from triage_runtime.routing import RoutingPolicy
from triage_runtime.topic_window import TopicWindow

RETRY_LATER = "retry_later"
"""Skipped: the blob store failed in a way that may pass (the classifier would retry)."""


def where_columns(document: DocumentRef) -> dict[str, str | None]:
    """The columns that say where a topic document came from, as ``batch score`` and
    ``replay`` write them: its file name, email part, ``kind:name`` source and arrival."""
    return {
        "path": document.filename,
        "part": email.part if (email := document.email) else None,
        "source": f"{document.source.kind.value}:{document.source.name}",
        "time": document.received_at.isoformat(),
    }


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


Classify = Callable[[list[scoring.Extracted]], Awaitable[list[DocumentClassifiedV1]]]


@dataclass(frozen=True)
class TopicRescorer:
    """A window of the documents topic, the function that re-scores its batches, and how
    many batches to have in hand ahead of the one being handled."""

    window: TopicWindow
    score: Callable[[Sequence[Any]], Coroutine[Any, Any, Rescored]]
    ahead: int = 1


def _classify_in_process(
    model: LoadedModel,
    batch: list[scoring.Extracted],
    model_ref: ModelRef,
    producer: Producer,
    policy: RoutingPolicy,
) -> list[DocumentClassifiedV1]:
    """``scoring.classify`` in a scoring process, with the model loaded there."""
    return scoring.classify(
        batch, model=model, model_ref=model_ref, producer=producer, policy=policy
    )


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
    policy: RoutingPolicy,
    processes: int = 1,
) -> AsyncIterator[TopicRescorer]:
    """Open the documents topic between two times, an extraction pool and the model's thread
    (or ``processes`` scoring processes), configured as the classifier's
    (``TRIAGE_CLASSIFIER_*``), scoring under ``policy``; close them all after.

    With more than one process, each has ``TRIAGE_CLASSIFIER_TORCH_THREADS`` torch threads
    (default one) and they are all loaded before the first record is read.
    """
    from triage_contracts import topics

    settings = scoring.ScoringSettings()
    window = TopicWindow(
        settings,
        settings.topic(topics.DOCUMENTS),
        since=since,
        until=until,
        group_id=group_id,
        batch_size=batch_size,
    )
    async with contextlib.AsyncExitStack() as stack:
        classify: Classify
        if processes > 1:
            scorers = await stack.enter_async_context(
                ScoringProcesses(
                    model, processes=processes, torch_threads=settings.torch_threads or 1
                )
            )

            async def classify(batch: list[scoring.Extracted]) -> list[DocumentClassifiedV1]:
                events: list[DocumentClassifiedV1] = await scorers.call(
                    _classify_in_process, batch, model_ref, producer, policy
                )
                return events

        else:
            thread = ModelThread(torch_threads=settings.torch_threads, name="rescoring")
            stack.callback(thread.close)

            async def classify(batch: list[scoring.Extracted]) -> list[DocumentClassifiedV1]:
                return await thread.run(
                    partial(
                        scoring.classify,
                        batch,
                        model=model,
                        model_ref=model_ref,
                        producer=producer,
                        policy=policy,
                    )
                )

        pool = await stack.enter_async_context(settings.extraction_pool())
        await stack.enter_async_context(window)
        reader = scoring.DocumentReader(
            blobs=settings.open_blob_store(), pool=pool, max_bytes=settings.max_document_bytes
        )
        yield TopicRescorer(
            window,
            partial(rescore, reader=reader, classify=classify),
            # One batch more than there are processes, so that each process finds the next
            # batch fetched and extracted when it finishes one.
            ahead=processes + 1 if processes > 1 else 1,
        )


async def scored_ahead(
    batches: AsyncIterator[list[Any]],
    score: Callable[[Sequence[Any]], Coroutine[Any, Any, Rescored]],
    *,
    ahead: int = 1,
) -> AsyncIterator[tuple[list[Any], Rescored]]:
    """Each batch with its new scores, ``ahead`` more batches scored while the caller handles
    this one.

    The model is the slow part; with batches scored ahead it keeps working while the caller
    writes to PostgreSQL, publishes and commits (and with N scoring processes, N batches are
    in them at once). Batches come out in order.
    """
    pending: deque[tuple[list[Any], asyncio.Task[Rescored]]] = deque()
    try:
        async for batch in batches:
            pending.append((batch, asyncio.create_task(score(batch))))
            if len(pending) > ahead:
                done, task = pending.popleft()
                yield done, await task
        while pending:
            done, task = pending.popleft()
            yield done, await task
    finally:
        for _, task in pending:  # none outlives this
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def rescore(
    records: Sequence[Any], *, reader: scoring.DocumentReader, classify: Classify
) -> Rescored:
    """Read and score a batch of DocumentReceived records as the classifier does.

    What the classifier would dead-letter is skipped under its error class, what it would
    retry later under ``retry_later``; the rest is re-scored.
    """
    out = Rescored()
    read = await reader.read(records)
    for _, error in read.dead:
        out.skipped[error.error_class.value] += 1
    out.skipped[RETRY_LATER] += len(read.retry)
    if not out.skipped[RETRY_LATER]:
        del out.skipped[RETRY_LATER]
    out.events = await classify(read.extracted)
    return out
