"""Table definitions. The schema is made and changed only by Alembic migrations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base for Triage's tables."""


SEARCH_CONFIG = "english"
"""The text search configuration of review items' search vector, and of queries against it."""
REVIEW_SEARCH_VECTOR = (
    "setweight(to_tsvector('english', coalesce(email_subject, '')), 'A')"
    " || setweight(to_tsvector('english', coalesce(email_sender, '')), 'A')"
    " || setweight(to_tsvector('english', coalesce(filename, '')), 'B')"
    " || setweight(to_tsvector('english', coalesce(search_text, '')), 'C')"
)
"""What a review item is found by (migration 0014): subject and sender, name, then text."""


class ReviewItem(Base):
    """A document waiting for (or decided by) a human reviewer; one row per document."""

    __tablename__ = "review_item"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(String(36), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(SmallInteger)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    predicted_label: Mapped[str | None] = mapped_column(String(40))
    confidence: Mapped[float | None] = mapped_column(Float)
    probabilities: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    model_version: Mapped[str | None] = mapped_column(String(80))
    model_role: Mapped[str | None] = mapped_column(String(16))
    extraction_status: Mapped[str] = mapped_column(String(16))
    source_kind: Mapped[str] = mapped_column(String(16))
    source_name: Mapped[str] = mapped_column(String(80))
    filename: Mapped[str | None] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(127))
    blob_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    trace_id: Mapped[str] = mapped_column(String(32))
    classified_event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    decided_label: Mapped[str | None] = mapped_column(String(40))
    decision_kind: Mapped[str | None] = mapped_column(String(16))
    """What a decision was (``outcomes.review.DecisionKind``): only ``label`` is training data."""
    decided_by: Mapped[str | None] = mapped_column(String(80))
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    email_sender: Mapped[str | None] = mapped_column(String(320))
    email_sender_name: Mapped[str | None] = mapped_column(String(320))
    """The sender's display name (migration 0022); None for items opened before it."""
    email_subject: Mapped[str | None] = mapped_column(String(998))
    email_mailbox: Mapped[str | None] = mapped_column(String(200))
    email_part: Mapped[str | None] = mapped_column(String(100))
    """The MIME part the document is (``EmailInfo.part``); None before migration 0023."""
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)
    # The classified event's explanation (triage_contracts.Explanation) and the threshold its
    # label needed under the event's policy; None for items opened before they were kept.
    explanation: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    threshold: Mapped[float | None] = mapped_column(Float)
    # Loaded only when asked for: a queue page never carries documents' text.
    search_text: Mapped[str | None] = mapped_column(Text, deferred=True)
    """The document's extracted text, stored by the review UI (``triage_review_ui.search``)."""
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR, Computed(REVIEW_SEARCH_VECTOR, persisted=True), deferred=True
    )
    decision_event_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    """The ReviewDecision event of the standing decision (retracted by an undo or reopen)."""
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalated_by: Mapped[str | None] = mapped_column(String(80))
    escalation_reason: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (
        Index("ix_review_item_status_due", "status", "due_at"),
        Index("ix_review_item_search", "search_vector", postgresql_using="gin"),
        # The review UI looks for open items still without text every few seconds.
        Index(
            "ix_review_item_unindexed",
            "id",
            postgresql_where=text("search_text IS NULL AND status IN ('pending', 'claimed')"),
        ),
        # A reviewer's last decision, for undoing it from the next item.
        Index(
            "ix_review_item_decided_by_at",
            "decided_by",
            "decided_at",
            postgresql_where=text("status = 'decided'"),
        ),
        Index(
            "ix_review_item_escalated",
            "due_at",
            postgresql_where=text("escalated_at IS NOT NULL AND status IN ('pending', 'claimed')"),
        ),
        # Live precision reads the quality samples of a recent window (outcomes.quality).
        Index(
            "ix_review_item_quality_sample",
            "created_at",
            postgresql_where=text("reason = 'quality_sample'"),
        ),
    )


class ReviewComment(Base):
    """A comment on a review item, or the note a reviewer left with a decision; removed
    with its item (retention)."""

    __tablename__ = "review_comment"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    review_item_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("review_item.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    author: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )


class RoutingDecision(Base):
    """The router's durable decision for a document, written before its event is published."""

    __tablename__ = "routing_decision"

    document_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    queue: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    decided_by: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[str | None] = mapped_column(String(80))
    model_role: Mapped[str | None] = mapped_column(String(16))
    confidence: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Set when a replay took the document out of this queue (and into review)."""


class RoutingCorrection(Base):
    """A change a replay made to a document's outcome (its events go through ``outbox``)."""

    __tablename__ = "routing_correction"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    replay_id: Mapped[str] = mapped_column(String(40))
    document_id: Mapped[str] = mapped_column(String(36))
    from_queue: Mapped[str | None] = mapped_column(String(40))
    """The queue the document left; None when it was in review."""
    to_queue: Mapped[str | None] = mapped_column(String(40))
    """The queue the document went to; None when it went to review."""
    from_model_version: Mapped[str | None] = mapped_column(String(80))
    to_model_version: Mapped[str] = mapped_column(String(80))
    confidence: Mapped[float | None] = mapped_column(Float)
    withdrawn_event_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    routed_event_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Document(Base):
    """Every accepted document, as ingest received it."""

    __tablename__ = "document"

    document_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source_kind: Mapped[str] = mapped_column(String(16))
    source_name: Mapped[str] = mapped_column(String(80))
    filename: Mapped[str | None] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(127))
    blob_sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    parent_document_id: Mapped[str | None] = mapped_column(String(36))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    trace_id: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str | None] = mapped_column(Text)
    """The Message-ID of the email it came out of (migration 0022)."""

    __table_args__ = (
        Index("ix_document_blob_sha256", "blob_sha256"),
        Index("ix_document_message_id", "message_id", postgresql_using="hash"),
        # A mail's parts, for the review UI's item page (migration 0023).
        Index(
            "ix_document_parent_document_id",
            "parent_document_id",
            postgresql_where=text("parent_document_id IS NOT NULL"),
        ),
    )


class EmailIdentity(Base):
    """The first arrival of an email by its Message-ID (``message_key``, its SHA-256) and its
    parts: a later copy with the same parts takes that arrival's document ids."""

    __tablename__ = "email_identity"

    message_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    parts_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    source_kind: Mapped[str] = mapped_column(String(16))
    source_name: Mapped[str] = mapped_column(String(80))
    raw_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class EmailRawSeen(Base):
    """An email (its Message-ID's SHA-256 and its size in bytes) whose documents are
    recorded: after a UIDVALIDITY reset, IMAP does not download it again."""

    __tablename__ = "email_raw_seen"

    message_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    raw_size: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class DocumentRaw(Base):
    """The raw email a document came out of (its body or an attachment): kept while the
    document's bytes are, removed by retention with the last of its documents."""

    __tablename__ = "document_raw"

    document_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    raw_sha256: Mapped[str] = mapped_column(String(64), index=True)


class DeadLetterBlob(Base):
    """The raw input of an ingest dead letter (an email that could not be parsed, a file the
    drop folder refused), kept for the document retention period after its last letter."""

    __tablename__ = "dead_letter_blob"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    dead_lettered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PendingBlob(Base):
    """Bytes being stored whose document is not recorded yet: the orphan sweep keeps them
    while ``held_at`` is within its grace period."""

    __tablename__ = "pending_blob"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    held_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class BlobSweepFloor(Base):
    """When ownership of raw emails and dead-letter inputs began to be recorded (written once,
    by migration 0021): the orphan sweep leaves blobs written before it alone."""

    __tablename__ = "blob_sweep_floor"

    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)


class DocumentOutcome(Base):
    """A document's one outcome: routed, in review, dead-lettered, or discarded by a reviewer
    (the primary key keeps it one). routing_decision and review_item rows need it; a replay
    or a human moves it."""

    __tablename__ = "document_outcome"

    document_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str | None] = mapped_column(String(40))
    decided_by: Mapped[str | None] = mapped_column(String(16))
    model_version: Mapped[str | None] = mapped_column(String(80))
    policy_version: Mapped[int | None] = mapped_column(BigInteger)
    dead_letter_stage: Mapped[str | None] = mapped_column(String(40))
    dead_letter_error_class: Mapped[str | None] = mapped_column(String(40))
    dead_letter_reason: Mapped[str | None] = mapped_column(String(500))
    """Why, while ``kind`` is ``dead_letter``: the stage, error class and reason of the dead
    letter (a later decision clears them)."""
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )


class DocumentPurge(Base):
    """When retention removed a document's raw bytes (the document and its outcome stay)."""

    __tablename__ = "document_purge"

    document_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    purged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DocumentStatus(Base):
    """The view ``document_status``: what a user sees of a document, derived (never written)."""

    __tablename__ = "document_status"

    document_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    """received, routed, in_review, decided (by a human), discarded (by a human: spam, not a
    document) or dead_lettered."""
    queue: Mapped[str | None] = mapped_column(String(40))
    model_version: Mapped[str | None] = mapped_column(String(80))
    policy_version: Mapped[int | None] = mapped_column(BigInteger)
    outcome_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dead_letter_stage: Mapped[str | None] = mapped_column(String(40))
    dead_letter_error_class: Mapped[str | None] = mapped_column(String(40))
    dead_letter_reason: Mapped[str | None] = mapped_column(String(500))
    """Set only while the status is dead_lettered (None for dead letters recorded before 0020)."""


class ApiKey(Base):
    """An upload API key; only its SHA-256 is stored."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80))
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyRecord(Base):
    """An Idempotency-Key: reserved by the request that holds it until ``reserved_until``,
    then the answer it gave, replayed on retries."""

    __tablename__ = "idempotency_record"

    api_key_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    owner_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    reserved_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(
            "response IS NOT NULL OR (owner_token IS NOT NULL AND reserved_until IS NOT NULL)",
            name="ck_idempotency_record_answered_or_reserved",
        ),
    )


class ImapCursor(Base):
    """How far the IMAP connector has read a mailbox: the last UID under a UIDVALIDITY."""

    __tablename__ = "imap_cursor"

    account: Mapped[str] = mapped_column(String(80), primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(200), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ImapAttempt(Base):
    """How often the IMAP connector has started taking one message, and its last error."""

    __tablename__ = "imap_attempt"

    account: Mapped[str] = mapped_column(String(80), primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(200), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    uid: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    attempts: Mapped[int] = mapped_column(SmallInteger)
    last_error: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ModelVersion(Base):
    """A registered model artifact: immutable, described by its metadata.json."""

    __tablename__ = "model_version"

    version: Mapped[str] = mapped_column(String(80), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    labels: Mapped[list[str]] = mapped_column(JSONB)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB)
    eval: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    training_data_sha256: Mapped[str] = mapped_column(String(64))
    model_sha256: Mapped[str] = mapped_column(String(64))
    artifact_metadata: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    registered_by: Mapped[str] = mapped_column(String(80))


class ModelAlias(Base):
    """Which version an alias (champion, canary, shadow) points at; NULL once cleared."""

    __tablename__ = "model_alias"

    alias: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[str | None] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_by: Mapped[str] = mapped_column(String(80))


class ModelAliasHistory(Base):
    """One move of an alias (promote, rollback, clear); the table is append-only."""

    __tablename__ = "model_alias_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    alias: Mapped[str] = mapped_column(String(16))
    from_version: Mapped[str | None] = mapped_column(String(80))
    to_version: Mapped[str | None] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str | None] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(default=False)
    gate_report: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )

    __table_args__ = (Index("ix_model_alias_history_alias_id", "alias", "id"),)


class RoutingPolicyRow(Base):
    """One version of the routing policy; the table is append-only (a trigger refuses changes).

    The newest row is the policy in force; each row names who changed it and why.
    """

    __tablename__ = "routing_policy"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    thresholds: Mapped[dict[str, dict[str, float]]] = mapped_column(JSONB)
    """Per-label thresholds by model version: ``{model_version: {label: threshold}}``."""
    canary_partitions: Mapped[list[int]] = mapped_column(JSONB)
    shadow_sample: Mapped[float] = mapped_column(Float)
    review_sla_hours: Mapped[float] = mapped_column(Float)
    quality_sample: Mapped[float] = mapped_column(Float, server_default="0")
    target_precision: Mapped[float] = mapped_column(Float, server_default="0.95")
    actor: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )


class AppUser(Base):
    """A person who signs in to the review UI; only a scrypt hash of the password is kept."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A signed-in browser session; only the SHA-256 of its token is stored."""

    __tablename__ = "web_session"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoginAttempt(Base):
    """A sign-in attempt, for the back-off per user name and address or per known browser."""

    __tablename__ = "login_attempt"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(80))
    remote_addr: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    success: Mapped[bool] = mapped_column(Boolean)
    # The SHA-256 of the known-browser token it came with, if that browser was known for the
    # user name; such attempts count against that browser only.
    device_sha256: Mapped[str | None] = mapped_column(String(64))


class KnownDevice(Base):
    """A browser that signed in as a user; only the SHA-256 of its cookie's token is stored."""

    __tablename__ = "known_device"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class AuditLog(Base):
    """Who did what, when, to which document; append-only (a trigger refuses changes)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(40))
    document_id: Mapped[str | None] = mapped_column(String(36))
    review_item_id: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class OutboxRow(Base):
    """An event a committed change implies, written in that change's transaction and
    published afterwards (``triage_runtime.outbox``): the one outbox of every service."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(249))
    schema: Mapped[str] = mapped_column(String(80))
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    document_id: Mapped[str | None] = mapped_column(String(36))
    payload: Mapped[str] = mapped_column(Text)
    """The event as JSON text (jsonb cannot hold the U+0000 an event may carry, escaped)."""
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
