"""The one scoring pipeline of the classifier, ``triage replay`` and ``triage batch score``.

A batch of DocumentReceived records is decoded, its blobs fetched at once, its documents
extracted with limits and scored in one model call; every failure is sorted the same way
wherever it happens (docs/contract.md, failure modes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from triage_contracts import (
    DocumentClassifiedV1,
    DocumentReceivedV1,
    ErrorClass,
    Explanation,
    Extraction,
    ExtractionStatus,
    ModelRef,
    Prediction,
    Producer,
)
from triage_contracts import headers as header_names
from triage_ml.model import LoadedModel
from triage_runtime.blobstore import BlobIntegrityError, BlobNotFoundError, BlobStore
from triage_runtime.kafka import (
    ConsumedRecord,
    RetryableError,
    UnprocessableError,
    decode_record,
    header_dict,
)
from triage_runtime.routing import RoutingPolicy
from triage_runtime.settings import CommonSettings
from triage_text.extract import ExtractedText
from triage_text.pool import ExtractionLimits, ExtractionPool


class ScoringSettings(CommonSettings):
    """How documents are read and scored (``TRIAGE_CLASSIFIER_*``), wherever they are scored."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_CLASSIFIER_", extra="ignore")

    max_document_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    extraction_workers: int | None = Field(
        default=None, gt=0, description="Processes for PDF extraction (default: CPU count)."
    )
    extraction_timeout_seconds: float = Field(default=20.0, gt=0)
    extraction_memory_bytes: int = Field(default=1024**3, gt=0)
    torch_threads: int | None = Field(
        default=None,
        gt=0,
        le=256,
        description=(
            "Intra-op threads torch may use for scoring (default: torch's, one per core). "
            "With N classifier processes on a host, cores / N; see docs/performance.md."
        ),
    )

    def extraction_pool(self) -> ExtractionPool:
        """An extraction pool with these limits (its workers start when it is entered)."""
        return ExtractionPool(
            workers=self.extraction_workers,
            limits=ExtractionLimits(
                timeout_seconds=self.extraction_timeout_seconds,
                memory_bytes=self.extraction_memory_bytes,
                max_bytes=self.max_document_bytes,
            ),
        )


@dataclass(frozen=True, slots=True)
class Extracted:
    """A received document, what extraction made of it, and its documents-topic partition."""

    received: DocumentReceivedV1
    text: ExtractedText
    partition: int = 0


@dataclass
class Read:
    """A batch as read: documents to score, and records that go no further, by why."""

    extracted: list[Extracted] = field(default_factory=list)
    dead: list[tuple[ConsumedRecord, UnprocessableError]] = field(default_factory=list)
    retry: list[tuple[ConsumedRecord, RetryableError]] = field(default_factory=list)


def source_partition(record: ConsumedRecord) -> int:
    """The documents-topic partition a record came from (a retried one carries it along)."""
    return int(header_dict(record.headers).get(header_names.SOURCE_PARTITION, record.partition))


class DocumentReader:
    """Decodes DocumentReceived records, fetches their blobs and extracts their text."""

    def __init__(self, *, blobs: BlobStore, pool: ExtractionPool, max_bytes: int) -> None:
        self._blobs = blobs
        self._pool = pool
        self._max_bytes = max_bytes

    async def fetch(self, received: DocumentReceivedV1) -> bytes | None:
        """The document's bytes, or None when it is over the size limit.

        A missing or corrupt blob will never be fixed by waiting (UnprocessableError); any
        other failure of the blob store is taken as transient (RetryableError).
        """
        blob = received.document.blob
        if blob.size_bytes > self._max_bytes:
            return None
        try:
            return await asyncio.to_thread(self._blobs.get, blob.sha256)
        except BlobNotFoundError as exc:
            raise UnprocessableError(
                ErrorClass.BLOB_MISSING,
                f"blob {blob.sha256} is not in the blob store",
                received.document_id,
            ) from exc
        except BlobIntegrityError as exc:
            raise UnprocessableError(
                ErrorClass.STORAGE_ERROR,
                f"blob {blob.sha256} does not match its hash",
                received.document_id,
            ) from exc
        except Exception as exc:
            raise RetryableError(
                f"blob store failed: {type(exc).__name__}", received.document_id
            ) from exc

    async def read(self, records: Sequence[ConsumedRecord]) -> Read:
        """Decode, fetch (all blobs at once: from an object store each is a round trip) and
        extract a batch; each record ends in exactly one of the three lists of ``Read``."""

        async def receive(record: ConsumedRecord) -> tuple[DocumentReceivedV1, bytes | None]:
            event = decode_record(record, DocumentReceivedV1)
            return event, await self.fetch(event)

        outcomes = await asyncio.gather(
            *(receive(record) for record in records), return_exceptions=True
        )
        out = Read()
        received: list[tuple[ConsumedRecord, DocumentReceivedV1, bytes | None]] = []
        for record, outcome in zip(records, outcomes, strict=True):
            if isinstance(outcome, UnprocessableError):
                out.dead.append((record, outcome))
            elif isinstance(outcome, RetryableError):
                out.retry.append((record, outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                received.append((record, *outcome))
        readable = [
            (data, event.document.blob.media_type)
            for _, event, data in received
            if data is not None
        ]
        texts = iter(await self._pool.extract_many(readable))
        for record, event, data in received:
            text = next(texts) if data is not None else ExtractedText(ExtractionStatus.TOO_LARGE)
            out.extracted.append(Extracted(event, text, source_partition(record)))
        return out


def classify(
    batch: Sequence[Extracted],
    *,
    model: LoadedModel,
    model_ref: ModelRef,
    producer: Producer,
    policy: RoutingPolicy,
) -> list[DocumentClassifiedV1]:
    """Score every document with text in one model call, under ``policy``'s thresholds, each
    with its explanation (``LoadedModel.predict_explained``); the others carry no prediction."""
    scorable = [item for item in batch if item.text.status is ExtractionStatus.OK]
    predictions: dict[int, Prediction] = {}
    explanations: dict[int, Explanation | None] = {}
    if scorable:
        scored = model.predict_explained([item.text.text for item in scorable])
        for item, (prediction, explanation) in zip(scorable, scored, strict=True):
            predictions[id(item)] = policy.apply(model_ref.version, prediction)
            explanations[id(item)] = explanation
    return [
        DocumentClassifiedV1(
            producer=producer,
            document_id=item.received.document_id,
            trace_id=item.received.trace_id,
            model=model_ref,
            policy_version=policy.version,
            document=item.received.document,
            extraction=Extraction(
                status=item.text.status, chars=len(item.text.text), pages=item.text.pages
            ),
            prediction=predictions.get(id(item)),
            explanation=explanations.get(id(item)),
        )
        for item in batch
    ]
