"""Versioned, frozen event models. A breaking change is a new class (``...V2``), never an edit."""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

DOCUMENT_ID_PATTERN = r"^doc_[0-9a-f]{32}$"
DocumentId = Annotated[str, StringConstraints(pattern=DOCUMENT_ID_PATTERN)]
"""A stable document id: ``doc_`` and 32 hex digits, derived from the inbound identity."""

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
TRACE_ID_PATTERN = r"^[0-9a-f]{32}$"
TraceId = Annotated[str, StringConstraints(pattern=TRACE_ID_PATTERN)]
Label = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
ShortText = Annotated[str, StringConstraints(max_length=500)]


def derive_document_id(namespace: str, *identity: str) -> str:
    """Derive a stable document id from where a document came from and what identifies it there."""
    digest = hashlib.sha256("\x1f".join((namespace, *identity)).encode()).hexdigest()
    return f"doc_{digest[:32]}"


def new_trace_id() -> str:
    """Return a fresh W3C-style 128-bit trace id in hex."""
    return secrets.token_hex(16)


def is_trace_id(value: str) -> bool:
    """Whether ``value`` is a trace id as events carry it (also an OpenTelemetry trace id)."""
    return re.fullmatch(TRACE_ID_PATTERN, value) is not None


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Contract(BaseModel):
    """Base of every contract model: immutable, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Producer(Contract):
    """The service (and its version) that produced an event."""

    service: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
    version: Annotated[str, StringConstraints(max_length=40)]


class ModelRole(enum.StrEnum):
    """The alias a model was serving under when it produced a score."""

    CHAMPION = "champion"
    CANARY = "canary"
    SHADOW = "shadow"
    RULES = "rules"


class ModelRef(Contract):
    """Which model produced a score, and in what role."""

    version: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    role: ModelRole


class SourceKind(enum.StrEnum):
    """How a document reached Triage."""

    UPLOAD = "upload"
    IMAP = "imap"
    SMTP = "smtp"
    FOLDER = "folder"


class Source(Contract):
    """Where a document came from; ``name`` names the connector (never a person's address)."""

    kind: SourceKind
    name: Annotated[str, StringConstraints(min_length=1, max_length=80)]


class BlobRef(Contract):
    """A pointer into the content-addressed blob store; raw bytes never travel in events."""

    sha256: Sha256Hex
    size_bytes: Annotated[int, Field(ge=0)]
    media_type: Annotated[str, StringConstraints(max_length=127)]


MetadataKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
MAX_METADATA_VALUE = 500
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE)]
MAX_METADATA_ITEMS = 20


class EmailInfo(Contract):
    """Where in an email a document came from, and what was wrong with the message."""

    message_id: Annotated[str, StringConstraints(max_length=998)] | None = None
    subject: Annotated[str, StringConstraints(max_length=998)] | None = None
    sender: Annotated[str, StringConstraints(max_length=320)] | None = None
    """The sender's address (``anna@example.com``)."""
    sender_name: Annotated[str, StringConstraints(max_length=320)] | None = None
    """The sender's display name (``Müller, Anna``), when From gives one."""
    mailbox: Annotated[str, StringConstraints(max_length=200)] | None = None
    part: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    """The MIME part this document is: ``body`` or a path such as ``2``, ``3.1``, ``2/body``."""
    defects: Annotated[
        list[Annotated[str, StringConstraints(max_length=200)]], Field(max_length=50)
    ] = Field(default_factory=list)


class DocumentRef(Contract):
    """The facts about a document that every stage carries along."""

    source: Source
    blob: BlobRef
    filename: Annotated[str, StringConstraints(max_length=255)] | None = None
    received_at: AwareDatetime
    parent_document_id: DocumentId | None = None
    """For an attachment or a nested message: the document of the enclosing message body."""
    email: EmailInfo | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=MAX_METADATA_ITEMS)] = (
        Field(default_factory=dict)
    )


class Event(Contract):
    """The envelope every event carries."""

    schema_name: str
    schema_version: int
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    producer: Producer
    trace_id: TraceId = Field(default_factory=new_trace_id)
    model: ModelRef | None = None


class DocumentEvent(Event):
    """An event about one document."""

    document_id: DocumentId


class DocumentReceivedV1(DocumentEvent):
    """A document was accepted by a connector and stored in the blob store."""

    schema_name: Literal["DocumentReceived"] = "DocumentReceived"
    schema_version: Literal[1] = 1
    document: DocumentRef


class ExtractionStatus(enum.StrEnum):
    """How text extraction went; anything but ``ok`` sends the document to review."""

    OK = "ok"
    EMPTY = "empty"
    ENCRYPTED = "encrypted"
    CORRUPT = "corrupt"
    UNSUPPORTED = "unsupported"
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"


class Extraction(Contract):
    """The outcome of text extraction for one document."""

    status: ExtractionStatus
    chars: Annotated[int, Field(ge=0)] = 0
    pages: Annotated[int, Field(ge=0)] | None = None


class Action(enum.StrEnum):
    """What the score says should happen to a document."""

    ROUTE = "route"
    REVIEW = "review"


class Prediction(Contract):
    """A calibrated prediction and the action its threshold implies."""

    label: Label
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]
    probabilities: dict[Label, Annotated[float, Field(ge=0.0, le=1.0)]]
    threshold: Annotated[float, Field(ge=0.0, le=1.0)]
    action: Action

    @model_validator(mode="after")
    def _action_follows_threshold(self) -> Prediction:
        expected = Action.ROUTE if self.confidence >= self.threshold else Action.REVIEW
        if self.action is not expected:
            raise ValueError(
                f"action {self.action} contradicts confidence {self.confidence} "
                f"and threshold {self.threshold}"
            )
        return self


MAX_EXPLANATION_TERMS = 10
"""The most terms an explanation carries: up to nine toward the label, one toward the runner-up."""
MAX_TERM_CHARS = 200


class TermWeight(Contract):
    """One term of a document and what it added to the margin of the predicted label over the
    runner-up, in logit units: positive pushes toward the label, negative toward the runner-up."""

    term: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TERM_CHARS)]
    weight: Annotated[float, Field(allow_inf_nan=False)]


class Explanation(Contract):
    """Why a linear model predicted a label: the document's terms that moved its margin most."""

    method: Literal["tfidf-margin"] = "tfidf-margin"
    """Each term's TF-IDF value times its coefficients (label minus runner-up), averaged over
    the served fold models; the logit margin of the label is their sum plus the intercepts
    (docs/models.md#explanations). A model with an embedding part itemises its TF-IDF part."""
    label: Label
    versus: Label
    """The runner-up: the label with the next highest probability."""
    terms: Annotated[tuple[TermWeight, ...], Field(max_length=MAX_EXPLANATION_TERMS)]


class DocumentClassifiedV1(DocumentEvent):
    """A model scored a document (or extraction failed and it could not be scored)."""

    schema_name: Literal["DocumentClassified"] = "DocumentClassified"
    schema_version: Literal[1] = 1
    model: ModelRef
    policy_version: Annotated[int, Field(ge=1)] | None = None
    """The routing policy whose thresholds set the prediction's action; None: the model's own."""
    document: DocumentRef
    extraction: Extraction
    prediction: Prediction | None
    explanation: Explanation | None = None
    """The terms behind the prediction (model kinds that have them); None: no explanation."""

    @model_validator(mode="after")
    def _prediction_needs_text(self) -> DocumentClassifiedV1:
        if self.prediction is not None and self.extraction.status is not ExtractionStatus.OK:
            raise ValueError("a prediction requires extraction status ok")
        check_explanation(self.prediction, self.explanation)
        return self


def check_explanation(prediction: Prediction | None, explanation: Explanation | None) -> None:
    """ValueError unless ``explanation`` is absent or explains ``prediction``'s label."""
    if explanation is None:
        return
    if prediction is None or explanation.label != prediction.label:
        raise ValueError("an explanation must explain the prediction's label")


class DecidedBy(enum.StrEnum):
    """Who decided a document's queue."""

    MODEL = "model"
    RULES = "rules"
    HUMAN = "human"


class DocumentRoutedV1(DocumentEvent):
    """A document was sent to an operational queue (published on that queue's topic)."""

    schema_name: Literal["DocumentRouted"] = "DocumentRouted"
    schema_version: Literal[1] = 1
    queue: Label
    decided_by: DecidedBy
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    document: DocumentRef
    supersedes_event_id: uuid.UUID | None = None


class DocumentWithdrawnV1(DocumentEvent):
    """A document routed to this queue was taken back out of it (by a replay after a rollback).

    Published on the queue's topic, next to the DocumentRouted it withdraws; where the
    document went instead is a DocumentRouted on another queue's topic (whose
    ``supersedes_event_id`` names the same event), or a review item.
    """

    schema_name: Literal["DocumentWithdrawn"] = "DocumentWithdrawn"
    schema_version: Literal[1] = 1
    queue: Label
    withdrawn_event_id: uuid.UUID
    """The DocumentRouted event this withdraws."""
    reason: ShortText
    replay_id: Annotated[str, StringConstraints(max_length=40)] | None = None


class ReviewDecisionV1(DocumentEvent):
    """A reviewer chose a queue for a document in the review queue."""

    schema_name: Literal["ReviewDecision"] = "ReviewDecision"
    schema_version: Literal[1] = 1
    review_item_id: Annotated[int, Field(ge=1)]
    label: Label
    reviewer: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    predicted_label: Label | None = None


class Retraction(enum.StrEnum):
    """Why a review decision no longer stands."""

    UNDO = "undo"
    """Its author took it back, within the undo window."""
    REOPEN = "reopen"
    """An admin reopened the item for another decision."""


class ReviewDecisionRetractedV1(DocumentEvent):
    """A ReviewDecision no longer stands: the item is back in the review queue.

    Published on the decisions topic after the decision it retracts. A consumer building
    training data keeps, per review item, the latest ReviewDecision no retraction names.
    """

    schema_name: Literal["ReviewDecisionRetracted"] = "ReviewDecisionRetracted"
    schema_version: Literal[1] = 1
    review_item_id: Annotated[int, Field(ge=1)]
    retracted_event_id: uuid.UUID | None
    """The ReviewDecision event this retracts (None: decided before ids were kept)."""
    label: Label
    """The label the retracted decision chose."""
    retraction: Retraction
    actor: Annotated[str, StringConstraints(min_length=1, max_length=80)]


class ErrorClass(enum.StrEnum):
    """Why a message or an inbound item went to the dead-letter topic."""

    UNDECODABLE = "undecodable"
    SCHEMA_INVALID = "schema_invalid"
    BLOB_MISSING = "blob_missing"
    MODEL_ERROR = "model_error"
    STORAGE_ERROR = "storage_error"
    MALFORMED_INPUT = "malformed_input"
    OVERSIZE = "oversize"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    CONNECTOR_ERROR = "connector_error"
    INTERNAL = "internal"


class DeadLetterV1(Event):
    """Something a stage could not process, with the reason and a way back to the original.

    A consumer's dead letter names the Kafka record (topic, partition, offset) and keeps its
    bytes; a connector's names its source and points at the raw input kept in the blob store.
    """

    schema_name: Literal["DeadLetter"] = "DeadLetter"
    schema_version: Literal[1] = 1
    document_id: DocumentId | None = None
    stage: Annotated[str, StringConstraints(max_length=40)]
    error_class: ErrorClass
    reason: ShortText
    source_topic: Annotated[str, StringConstraints(max_length=249)] | None = None
    source_partition: Annotated[int, Field(ge=0)] | None = None
    source_offset: Annotated[int, Field(ge=0)] | None = None
    original_key: str | None = None
    original_value_b64: str | None = None
    original_headers: dict[str, str] = Field(default_factory=dict)
    source: Source | None = None
    raw_blob: BlobRef | None = None
    raw_name: Annotated[str, StringConstraints(max_length=255)] | None = None
    """The kept input's file name, where it had one (a dropped or uploaded file)."""
    mailbox: Annotated[str, StringConstraints(max_length=200)] | None = None
    """The mailbox a mail was read from (IMAP), as in ``EmailInfo.mailbox``."""

    @property
    def named_document_id(self) -> str | None:
        """The document this letter is about: ``document_id``, or, when the stage could not
        read the record far enough to know it (undecodable, schema-invalid), the record's
        key if it has a document id's shape (the pipeline's topics are keyed by document)."""
        if self.document_id is not None:
            return self.document_id
        key = self.original_key
        return key if key is not None and re.fullmatch(DOCUMENT_ID_PATTERN, key) else None

    @model_validator(mode="after")
    def _points_back(self) -> DeadLetterV1:
        from_kafka = self.source_topic is not None and self.original_value_b64 is not None
        if not (from_kafka or self.raw_blob is not None):
            raise ValueError("a dead letter needs the original record or a kept raw blob")
        return self


EVENT_TYPES: tuple[type[Event], ...] = (
    DocumentReceivedV1,
    DocumentClassifiedV1,
    DocumentRoutedV1,
    DocumentWithdrawnV1,
    ReviewDecisionV1,
    ReviewDecisionRetractedV1,
    DeadLetterV1,
)


def schema_key(event_type: type[Event]) -> str:
    """Return ``Name.vN`` for an event class, as used in the ``triage-schema`` header."""
    fields: dict[str, Any] = event_type.model_fields
    return f"{fields['schema_name'].default}.v{fields['schema_version'].default}"
