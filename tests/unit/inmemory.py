"""In-memory stand-ins for the handlers' dependencies: Kafka records, topics read back from
FastStream's TestKafkaBroker, a blob store in a dict, and the outbox."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from triage_contracts import DeadLetterV1, Event, Source
from triage_runtime.blobstore import BlobNotFoundError, ListedBlob
from triage_runtime.kafka import decode_event, header_dict, make_broker, publish_many
from triage_runtime.kafka_connection import KafkaConnection

E = TypeVar("E", bound=Event)


def in_memory_broker() -> KafkaBroker:
    """A broker as the services make it; enter ``TestKafkaBroker(broker)`` to use it."""
    return make_broker(KafkaConnection(kafka_bootstrap="127.0.0.1:1"), client_id="unit-test")


def consumer_record(
    topic: str,
    value: bytes | None,
    *,
    key: bytes | None = None,
    partition: int = 0,
    offset: int = 0,
    headers: Mapping[str, str] | None = None,
) -> ConsumerRecord[bytes, bytes]:
    """A record as aiokafka's consumer hands it over."""
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=int(time.time() * 1000),
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=[(name, v.encode()) for name, v in (headers or {}).items()],
    )


class Topics:
    """What is published to some topics, kept in order; register before the broker starts."""

    def __init__(self, broker: KafkaBroker, names: Iterable[str]) -> None:
        self.records: dict[str, list[ConsumerRecord[bytes, bytes]]] = {}
        for name in names:
            self.records[name] = []
            broker.subscriber(name)(self._keeper(name))

    def _keeper(self, name: str) -> Callable[[KafkaMessage], Awaitable[None]]:
        kept = self.records[name]

        async def keep(message: KafkaMessage) -> None:
            kept.append(message.raw_message)

        return keep

    def events(self, topic: str, event_type: type[E]) -> list[E]:
        """The events published to ``topic``, decoded."""
        return [decode_event(r.value, event_type) for r in self.records[topic]]

    def headers(self, topic: str) -> list[dict[str, str]]:
        """The headers of each record published to ``topic``."""
        return [header_dict(r.headers) for r in self.records[topic]]


class MemoryBlobs:
    """A blob store in a dict; ``failing`` makes every read fail as an unreachable store."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.failing = False
        self.reads = 0

    def put(self, data: bytes) -> str:
        """Store ``data`` under its SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def put_file(self, path: Path) -> str:
        """Store a file's bytes."""
        return self.put(path.read_bytes())

    def get(self, sha256: str) -> bytes:
        """The bytes under ``sha256``; ConnectionError while ``failing``."""
        self.reads += 1
        if self.failing:
            raise ConnectionError("blob store unreachable")
        try:
            return self.blobs[sha256]
        except KeyError:
            raise BlobNotFoundError(sha256) from None

    def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under ``sha256``."""
        return sha256 in self.blobs

    def delete(self, sha256: str) -> bool:
        """Remove the blob under ``sha256``."""
        return self.blobs.pop(sha256, None) is not None

    def list_blobs(self) -> Iterator[ListedBlob]:
        """Every blob, as if written just now."""
        now = datetime.now(UTC)
        return iter([ListedBlob(sha, now) for sha in list(self.blobs)])


class MemoryBlobHolds:
    """Ingest's blob ownership (``IngestStore.hold_blobs``, ``record_dead_letter``) in
    sets: what was held before it was stored, which raw inputs dead letters keep."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.dead_letter_inputs: set[str] = set()
        self.dead_letters: list[tuple[str, DeadLetterV1]] = []

    async def hold_blobs(self, sha256s: Collection[str]) -> None:
        """Remember the hashes as held."""
        self.held.update(sha256s)

    async def record_dead_letter(self, topic: str, letter: DeadLetterV1) -> None:
        """Remember a dead letter and its raw input."""
        if letter.raw_blob is not None:
            self.dead_letter_inputs.add(letter.raw_blob.sha256)
        self.dead_letters.append((topic, letter))


class MemoryEmailIdentities:
    """Ingest's email identities (``IngestStore.claim_email_identity``, ``record_email_seen``,
    ``emails_seen``) in dicts: the first arrival of each (Message-ID, parts) keeps its ids."""

    def __init__(self) -> None:
        self.identities: dict[tuple[str, str, str], tuple[Source, str]] = {}
        self.seen: set[tuple[str, str, int]] = set()

    async def claim_email_identity(
        self, scope: str, message_id: str, parts_sha256: str, *, source: Source, raw_sha256: str
    ) -> tuple[Source, str]:
        """The first arrival's source and raw hash; this one's if it is the first."""
        first = (source, raw_sha256)
        return self.identities.setdefault((scope, message_id, parts_sha256), first)

    async def record_email_seen(self, scope: str, message_id: str, raw_size: int) -> None:
        """Remember the email as recorded."""
        self.seen.add((scope, message_id, raw_size))

    async def emails_seen(
        self, scope: str, emails: Collection[tuple[str, int]]
    ) -> set[tuple[str, int]]:
        """Those of ``emails`` remembered as recorded."""
        return {(mid, size) for mid, size in emails if (scope, mid, size) in self.seen}


class MemoryOutbox:
    """The outbox (``triage_runtime.outbox``) in memory: a fake store adds rows in its
    "transaction"; ``publish`` (by event id) and ``relay`` (everything) publish them in the
    order added, and a broker failure leaves them pending, as the real one does."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker
        self.pending: dict[uuid.UUID, tuple[str, Event]] = {}
        self.published: list[uuid.UUID] = []

    def add(self, items: Sequence[tuple[str, Event]]) -> None:
        """Write rows (one per event id, as the table's unique key keeps it)."""
        for topic, event in items:
            assert event.event_id not in self.pending and event.event_id not in self.published
            self.pending[event.event_id] = (topic, event)

    async def publish(self, event_ids: Collection[uuid.UUID]) -> int:
        """Publish these events if still pending; a failure leaves them for ``relay``."""
        wanted = set(event_ids)
        return await self._publish([i for i in self.pending if i in wanted])

    async def relay(self) -> int:
        """Publish everything pending."""
        return await self._publish(list(self.pending))

    async def _publish(self, ids: list[uuid.UUID]) -> int:
        try:
            await publish_many(self.broker, [self.pending[i] for i in ids])
        except Exception:  # noqa: BLE001 - as Outbox.publish: the rows wait for the relay
            return 0
        for i in ids:
            del self.pending[i]
            self.published.append(i)
        return len(ids)
