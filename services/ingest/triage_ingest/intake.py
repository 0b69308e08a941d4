"""The one way into Triage: store the bytes, record the document, publish it exactly once.

Every connector (upload, SMTP, IMAP, drop folder) hands its input to an Intake. A document
and its event (in the outbox, ``triage_runtime.outbox``) are recorded in one transaction and
the event published after it commits, by the intake at once or by the outbox relay later: a
retry or a crash publishes the same event again at most, never a second document.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from faststream.kafka import KafkaBroker

from triage_contracts import (
    BlobRef,
    DeadLetterV1,
    EmailInfo,
    ErrorClass,
    Producer,
    Source,
    derive_document_id,
    utcnow,
)
from triage_ingest import domain
from triage_ingest.mailrules import (
    DEFAULT_RULE,
    MailFacts,
    MailRule,
    choose_rule,
    rule_metadata,
    select_parts,
)
from triage_ingest.metrics import DOCUMENTS_ACCEPTED
from triage_ingest.store import IngestStore
from triage_runtime.blobstore import BlobStore, file_sha256
from triage_runtime.metrics import DEAD_LETTERS
from triage_runtime.outbox import Publisher
from triage_text.email.parse import EMAIL_MEDIA_TYPE, parse_email
from triage_text.email.result import ParsedMessage, ParsedPart

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A document that is stored and published."""

    document_id: str
    sha256: str
    size_bytes: int
    media_type: str
    filename: str | None
    parent_document_id: str | None = None
    created: bool = False
    """This call recorded it (False: the same document was already known)."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """A stored blob to accept as a document (see ``Intake.accept``)."""

    source: Source
    sha256: str
    size_bytes: int
    media_type: str
    filename: str | None
    identity: tuple[str, ...] = ()
    parent_document_id: str | None = None
    email: EmailInfo | None = None
    metadata: Mapping[str, str] | None = None
    raw_sha256: str | None = None
    """The raw email this document came out of, which belongs to it from then on."""
    id_source: Source | None = None
    """The source whose ids the document's is one of, when not ``source`` (an email copy)."""


@dataclass(frozen=True, slots=True)
class EmailAccepted:
    """What one inbound email became."""

    raw_sha256: str
    documents: list[Accepted] = field(default_factory=list)
    defects: tuple[str, ...] = ()
    rule: MailRule = DEFAULT_RULE
    """The mail rule that chose its documents (and, for IMAP, what is done to it next)."""


class Intake:
    """Stores inbound bytes, records documents and publishes DocumentReceived events."""

    def __init__(
        self,
        *,
        blobs: BlobStore,
        broker: KafkaBroker,
        store: IngestStore,
        outbox: Publisher,
        producer: Producer,
        documents_topic: str,
        deadletter_topic: str,
    ) -> None:
        self._blobs = blobs
        self._broker = broker
        self._store = store
        self._outbox = outbox
        for error_class in ErrorClass:  # from 0, so alerts see the first one (kafka.py)
            DEAD_LETTERS.labels("ingest", error_class.value)
        self._producer = producer
        self._documents_topic = documents_topic
        self._deadletter_topic = deadletter_topic

    async def hold(self, sha256s: Collection[str]) -> None:
        """Say these bytes are being stored, before they are: the orphan sweep keeps them."""
        await self._store.hold_blobs(sha256s)

    async def store_bytes(self, data: bytes) -> str:
        """Put bytes in the blob store (off the event loop) and return their hash."""
        [sha256] = await self.store_all_bytes([data])
        return sha256

    async def store_all_bytes(self, datas: Sequence[bytes]) -> list[str]:
        """``store_bytes`` for several, held in one round trip; their hashes, in order."""
        await self.hold(
            await asyncio.to_thread(lambda: [hashlib.sha256(data).hexdigest() for data in datas])
        )
        return [await asyncio.to_thread(self._blobs.put, data) for data in datas]

    async def store_file(self, path: Path) -> str:
        """Put a file in the blob store, streamed, and return its hash."""
        [sha256] = await self.store_files([path])
        return sha256

    async def store_files(
        self, paths: Sequence[Path], *, sha256s: Sequence[str] | None = None
    ) -> list[str]:
        """``store_file`` for several files, their writes and fsyncs overlapping in threads;
        ``sha256s``, when the caller has them, spares reading each file once more to hold it.

        Every write has finished before a failure is raised, so the caller may remove the
        files as soon as this returns or raises.
        """
        if sha256s is None:
            hashed = await asyncio.gather(
                *(asyncio.to_thread(file_sha256, path) for path in paths), return_exceptions=True
            )
            # A file that cannot be read fails below, in its write, with the others written.
            sha256s = [sha for sha in hashed if isinstance(sha, str)]
        await self.hold(sha256s)
        results = await asyncio.gather(
            *(asyncio.to_thread(self._blobs.put_file, path) for path in paths),
            return_exceptions=True,
        )
        hashes: list[str] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            hashes.append(result)
        if changed := set(hashes) - set(sha256s):  # a file changed after it was hashed
            await self.hold(changed)
        return hashes

    async def accept(
        self,
        *,
        source: Source,
        sha256: str,
        size_bytes: int,
        media_type: str,
        filename: str | None,
        identity: tuple[str, ...] = (),
        parent_document_id: str | None = None,
        email: EmailInfo | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Accepted:
        """Record and publish a stored blob as a document; repeating it changes nothing."""
        [accepted] = await self.accept_many(
            [
                Arrival(
                    source=source,
                    sha256=sha256,
                    size_bytes=size_bytes,
                    media_type=media_type,
                    filename=filename,
                    identity=identity,
                    parent_document_id=parent_document_id,
                    email=email,
                    metadata=metadata,
                )
            ]
        )
        return accepted

    async def accept_many(self, arrivals: Sequence[Arrival]) -> list[Accepted]:
        """``accept`` for several stored blobs at once: one transaction records them and their
        events, which are then published together.

        A crash anywhere leaves each document either unrecorded (the caller's retry records
        it) or recorded with its event, which the outbox publishes at least once.
        """
        now = utcnow()
        events = [
            domain.document_received(
                source=a.source,
                sha256=a.sha256,
                size_bytes=a.size_bytes,
                media_type=a.media_type,
                filename=a.filename,
                received_at=now,
                producer=self._producer,
                identity=a.identity,
                parent_document_id=a.parent_document_id,
                email=a.email,
                metadata=a.metadata,
                id_source=a.id_source,
            )
            for a in arrivals
        ]
        raws = {
            event.document_id: a.raw_sha256
            for a, event in zip(arrivals, events, strict=True)
            if a.raw_sha256 is not None
        }
        stored = await self._store.record_documents(events, topic=self._documents_topic, raws=raws)
        # Only what this call created is new: the same bytes again (in this request, a retry
        # or a concurrent one) are the document already accepted, whose event the outbox
        # publishes once; if a crash left it pending, this publishes it now.
        created = [event for event, row in zip(events, stored, strict=True) if row.created]
        await self._outbox.publish(list(dict.fromkeys(row.event_id for row in stored)))
        for event in created:
            source = event.document.source
            DOCUMENTS_ACCEPTED.labels(source.kind.value).inc()
            log.info(
                "document accepted",
                extra={
                    "document_id": event.document_id,
                    "source_kind": source.kind.value,
                    "media_type": event.document.blob.media_type,
                    "size_bytes": event.document.blob.size_bytes,
                    "trace_id": event.trace_id,
                },
            )
        # What was stored, not what arrived: the same document again keeps its first name
        # and type (the bytes, and so the hash and size, are the same by its identity).
        return [
            Accepted(
                document_id=event.document_id,
                sha256=a.sha256,
                size_bytes=a.size_bytes,
                media_type=row.media_type,
                filename=row.filename,
                parent_document_id=a.parent_document_id,
                created=row.created,
            )
            for a, event, row in zip(arrivals, events, stored, strict=True)
        ]

    async def accept_email(
        self,
        raw: bytes,
        *,
        source: Source,
        mailbox: str | None = None,
        name: str | None = None,
        rules: Sequence[MailRule] = (),
        arrived: datetime | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> EmailAccepted:
        """Keep the raw message, then accept one document per body and attachment that the
        first matching mail rule (else the default one) takes, each with ``metadata`` and
        what the rule sets.

        A message is its bytes, or, when it has a Message-ID, that and its parts: a copy
        (from another mailbox or connector, with headers added on the way) is the documents
        of its first arrival. A different message reusing the Message-ID is not.
        ``mailbox`` (IMAP) and ``name`` (a dropped or uploaded ``.eml``) name the message in a
        dead letter; ``mailbox`` goes on its documents too.
        """
        try:
            parsed: ParsedMessage = await asyncio.to_thread(parse_email, raw)
        except Exception as exc:  # noqa: BLE001 - the parser promises not to raise; belt and braces
            raw_sha = await self.store_bytes(raw)
            await self.dead_letter(
                source=source,
                raw_sha256=raw_sha,
                raw_size=len(raw),
                media_type=EMAIL_MEDIA_TYPE,
                error_class=ErrorClass.MALFORMED_INPUT,
                reason=f"email could not be parsed: {type(exc).__name__}",
                raw_name=name,
                mailbox=mailbox,
            )
            return EmailAccepted(raw_sha256=raw_sha)
        facts = MailFacts.of(parsed, mailbox=mailbox, arrived=arrived)
        rule = choose_rule(rules, facts, now=utcnow())
        parts = select_parts(parsed.parts, rule)
        if not parts:  # nothing to own the raw message: it is not kept
            raw_sha = await asyncio.to_thread(lambda: hashlib.sha256(raw).hexdigest())
            return EmailAccepted(raw_sha256=raw_sha, defects=parsed.defects, rule=rule)
        raw_sha = await self.store_bytes(raw)

        shas = await self.store_all_bytes([part.data for part in parts])
        id_source, id_raw = source, raw_sha
        if parsed.message_id:
            id_source, id_raw = await self._store.claim_email_identity(
                domain.email_scope(source),
                parsed.message_id,
                _parts_sha256(parsed, parts, shas),
                source=source,
                raw_sha256=raw_sha,
            )

        def document_id_of(part: str) -> str:
            return derive_document_id(id_source.kind.value, id_source.name, id_raw, part)

        taken = {part.part for part in parts}
        tags = {**(metadata or {}), **rule_metadata(rule)}
        arrivals: list[Arrival] = []
        for part, sha in zip(parts, shas, strict=True):
            defects = list(part.defects)
            if part.role == "body":
                # Message-level defects belong with the body; some are on both, so dedupe.
                defects = list(dict.fromkeys([*parsed.defects, *defects]))
            arrivals.append(
                Arrival(
                    source=source,
                    sha256=sha,
                    size_bytes=len(part.data),
                    media_type=part.media_type,
                    filename=part.filename,
                    identity=(id_raw, part.part),
                    id_source=id_source,
                    raw_sha256=raw_sha,
                    # A body the rule did not take is no document to point at.
                    parent_document_id=document_id_of(part.parent)
                    if part.parent in taken
                    else None,
                    email=EmailInfo(
                        message_id=_cut(parsed.message_id, 998),
                        subject=_cut(parsed.subject, 998),
                        sender=_cut(parsed.sender, 320),
                        sender_name=_cut(parsed.sender_name, 320),
                        mailbox=_cut(mailbox, 200),
                        part=part.part[:100],
                        defects=[d[:200] for d in defects[:50]],
                    ),
                    metadata=tags,
                )
            )
        accepted = await self.accept_many(arrivals)
        if parsed.message_id:
            await self._store.record_email_seen(
                domain.email_scope(source), parsed.message_id, len(raw)
            )
        return EmailAccepted(
            raw_sha256=raw_sha, documents=accepted, defects=parsed.defects, rule=rule
        )

    async def dead_letter(
        self,
        *,
        source: Source,
        raw_sha256: str,
        raw_size: int,
        media_type: str,
        error_class: ErrorClass,
        reason: str,
        raw_name: str | None = None,
        mailbox: str | None = None,
    ) -> DeadLetterV1:
        """Publish a dead letter that points at the kept raw input (kept for retention), with
        the input's file name or mailbox where known (``triage dlq list`` shows them).

        The letter goes through the outbox: recorded with its raw input's retention, then
        published (at once, or by the relay once Kafka answers)."""
        letter = DeadLetterV1(
            producer=self._producer,
            stage=f"ingest.{source.kind.value}",
            error_class=error_class,
            reason=reason[:500],
            source=source,
            raw_blob=BlobRef(sha256=raw_sha256, size_bytes=raw_size, media_type=media_type),
            raw_name=domain.safe_filename(raw_name),
            mailbox=_cut(mailbox, 200),
        )
        await self._store.record_dead_letter(self._deadletter_topic, letter)
        await self._outbox.publish([letter.event_id])
        DEAD_LETTERS.labels("ingest", error_class.value).inc()
        log.warning(
            "dead-lettered inbound input",
            extra={
                "source_kind": source.kind.value,
                "error_class": error_class.value,
                "raw_sha256": raw_sha256,
            },
        )
        return letter


def _parts_sha256(parsed: ParsedMessage, parts: Sequence[ParsedPart], shas: Sequence[str]) -> str:
    """What an email's documents are: its subject and sender, and each part taken's place,
    type, name and bytes (not the other headers, which relays and mailbox copies add to)."""
    taken = [
        [part.part, part.parent, part.media_type, part.filename, sha]
        for part, sha in zip(parts, shas, strict=True)
    ]
    return hashlib.sha256(json.dumps([parsed.subject, parsed.sender, taken]).encode()).hexdigest()


def _cut(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None else None
