"""The one outbox: the events a database change implies, written in that change's
transaction and published once it has committed.

Every writer whose change must be announced on Kafka (ingest's intake, the router, the
review workflow, a replay) calls ``add`` inside its transaction with the (topic, event)
pairs the change implies. After the commit it calls ``Outbox.publish`` with those events'
ids: the direct path, which publishes them at once. Whatever that path misses (the broker
was down, the process died between the commit and the publish) the relay publishes: every
service that writes runs ``Outbox.relaying``, and one pass at a time across all of them (a
PostgreSQL advisory lock) publishes the rows pending for longer than ``GRACE``, in the order
they were written.

A row is locked (``FOR UPDATE``, in id order) and marked published in the same transaction
that publishes it, so two publishers never publish one row: the second waits, then finds it
published. The direct path takes the earlier pending events of the same documents first, so
a document's events go out in the order written. A crash after the broker's acknowledgement
and before the commit publishes that event again with the same event id (at least once;
consumers deduplicate on event id). Published rows are deleted after ``keep``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Protocol

from faststream.kafka import KafkaBroker
from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from triage_contracts import EVENT_TYPES, Event
from triage_runtime.db.models import OutboxRow
from triage_runtime.kafka import publish_many
from triage_runtime.metrics import (
    EVENTS_PRODUCED,
    OUTBOX_OLDEST_SECONDS,
    OUTBOX_PENDING,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_PUBLISHED,
    topic_family,
)

log = logging.getLogger(__name__)

GRACE = timedelta(seconds=5)
"""The relay leaves a row this long to the direct path of the writer that added it."""
RELAY_LOCK = 0x7472_6961_6765  # "triage": one relay pass at a time, across every service
BATCH = 500

_TYPES: dict[str, type[Event]] = {
    cls.model_fields["schema_name"].default: cls for cls in EVENT_TYPES
}


def rows_for(items: Sequence[tuple[str, Event]]) -> list[dict[str, Any]]:
    """The outbox rows of (topic, event) pairs, in order."""
    return [
        {
            "topic": topic,
            "schema": event.schema_name,
            "event_id": event.event_id,
            "document_id": getattr(event, "document_id", None),
            "payload": event.model_dump_json(),
        }
        for topic, event in items
    ]


async def add(session: AsyncSession, items: Sequence[tuple[str, Event]]) -> list[uuid.UUID]:
    """Write (topic, event) pairs to the outbox in the caller's transaction; their event ids.

    They are published in this order once the transaction commits (``Outbox.publish`` right
    after it, or the relay later).
    """
    if not items:
        return []
    await session.execute(insert(OutboxRow).values(rows_for(items)))
    return [event.event_id for _, event in items]


class Publisher(Protocol):
    """What a writer needs after its commit: ``Outbox.publish`` (a fake in unit tests)."""

    async def publish(self, event_ids: Collection[uuid.UUID]) -> int:
        """Publish these committed events if still pending; never raises; how many."""
        ...


class InBackground:
    """A publisher that starts ``publish`` in a task and returns at once, for a writer that
    answers a person (the review UI): a click must not wait on Kafka. What the task does not
    publish (Kafka down, the process stopping) the relay does."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._tasks: set[asyncio.Task[int]] = set()

    async def publish(self, event_ids: Collection[uuid.UUID]) -> int:
        """Start publishing these events; 0 (none is published yet)."""
        task = asyncio.create_task(self._publisher.publish(list(event_ids)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return 0


def event_of(row: OutboxRow) -> Event:
    """The event an outbox row holds."""
    return _TYPES[row.schema].model_validate_json(row.payload)


class Outbox:
    """Publishes the outbox's rows: directly after a commit, and by the relay."""

    def __init__(
        self, engine: AsyncEngine, broker: KafkaBroker, *, service: str, topic_prefix: str = ""
    ) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._broker = broker
        self._service = service
        self._prefix = topic_prefix
        for path in ("direct", "relay"):  # from 0, so rate() sees the first one
            OUTBOX_PUBLISHED.labels(service, path)
            OUTBOX_PUBLISH_FAILURES.labels(service, path)

    async def publish(self, event_ids: Collection[uuid.UUID]) -> int:
        """Publish these events if they are still pending (the direct path); how many were.

        Never raises for a broker or database failure: the events are committed, the relay
        publishes them later, and the failure is logged and counted.
        """
        ids = list(event_ids)
        if not ids:
            return 0
        # The documents' earlier events still pending (their writer's publish failed) go
        # first, so a document's events reach its partition in the order written.
        documents = select(OutboxRow.document_id).where(
            OutboxRow.event_id.in_(ids), OutboxRow.document_id.is_not(None)
        )
        mine = or_(OutboxRow.event_id.in_(ids), OutboxRow.document_id.in_(documents))
        total = 0
        try:
            while True:
                async with self._sessions.begin() as session:
                    published = await self._publish_in(session, mine, path="direct")
                total += published
                if published < BATCH:
                    return total
        except Exception as exc:  # noqa: BLE001 - committed rows wait for the relay
            OUTBOX_PUBLISH_FAILURES.labels(self._service, "direct").inc()
            log.warning(
                "outbox events not published now; the relay will publish them",
                extra={"events": len(ids), "error": type(exc).__name__},
            )
            return total

    async def relay(self, *, grace: timedelta = GRACE, wait: bool = False) -> int:
        """Publish every row pending for longer than ``grace``, oldest first; how many.

        One pass runs at a time across every service; unless ``wait``, a pass that finds
        another one running returns 0 at once. A failure raises (the caller retries).
        """
        total = 0
        while True:
            async with self._sessions.begin() as session:
                lock = func.pg_advisory_xact_lock if wait else func.pg_try_advisory_xact_lock
                got = await session.scalar(select(lock(RELAY_LOCK)))
                if got is False:
                    return total
                before = func.clock_timestamp() - grace
                published = await self._publish_in(
                    session, OutboxRow.created_at <= before, path="relay"
                )
            total += published
            if published < BATCH:
                return total

    async def _publish_in(
        self, session: AsyncSession, where: ColumnElement[bool], *, path: str
    ) -> int:
        rows = (
            await session.scalars(
                select(OutboxRow)
                .where(OutboxRow.published_at.is_(None), where)
                .order_by(OutboxRow.id)
                .limit(BATCH)
                # Locked in id order, everywhere: a publisher waits for another's rows (and
                # then skips them, published) rather than overtake them; no deadlock.
                .with_for_update()
            )
        ).all()
        if not rows:
            return 0
        await publish_many(self._broker, [(row.topic, event_of(row)) for row in rows])
        await session.execute(
            update(OutboxRow)
            .where(OutboxRow.id.in_([row.id for row in rows]))
            .values(published_at=func.clock_timestamp())
        )
        OUTBOX_PUBLISHED.labels(self._service, path).inc(len(rows))
        for row in rows:
            family = topic_family(row.topic.removeprefix(self._prefix))
            EVENTS_PRODUCED.labels(self._service, family).inc()
        return len(rows)

    async def measure(self) -> tuple[int, float]:
        """Set the pending gauges; return (rows pending, age of the oldest in seconds)."""
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(
                        func.count(),
                        func.extract(
                            "epoch", func.clock_timestamp() - func.min(OutboxRow.created_at)
                        ),
                    ).where(OutboxRow.published_at.is_(None))
                )
            ).one()
        pending, oldest = int(found[0]), float(found[1] or 0.0)
        OUTBOX_PENDING.labels(self._service).set(pending)
        OUTBOX_OLDEST_SECONDS.labels(self._service).set(oldest)
        return pending, oldest

    async def forget_published(self, *, older_than: timedelta) -> int:
        """Delete rows published more than ``older_than`` ago; how many."""
        async with self._sessions.begin() as session:
            gone = await session.execute(
                delete(OutboxRow).where(
                    OutboxRow.published_at.is_not(None),
                    OutboxRow.published_at < func.clock_timestamp() - older_than,
                )
            )
        return int(getattr(gone, "rowcount", 0) or 0)

    async def relay_forever(self, *, interval: float, keep: timedelta) -> None:
        """Relay, measure and forget every ``interval`` seconds until cancelled; a failed
        pass is logged, counted and tried again."""
        while True:
            try:
                await self.relay()
                await self.measure()
                await self.forget_published(older_than=keep)
            except Exception:
                OUTBOX_PUBLISH_FAILURES.labels(self._service, "relay").inc()
                log.exception("outbox relay pass failed; retrying")
            await asyncio.sleep(interval)

    @asynccontextmanager
    async def relaying(self, *, interval: float, keep: timedelta) -> AsyncIterator[None]:
        """Run ``relay_forever`` while the block runs."""
        task = asyncio.create_task(
            self.relay_forever(interval=interval, keep=keep), name="outbox-relay"
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
