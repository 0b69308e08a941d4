"""The upload API's JSON answers: the documents an upload created, and a document's status."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field


class DocumentAccepted(BaseModel):
    """One accepted file."""

    document_id: str
    status_url: str
    filename: str | None
    media_type: str
    size_bytes: int
    sha256: str


class UploadAccepted(BaseModel):
    """The answer to an upload: the documents it created (202 Accepted)."""

    documents: list[DocumentAccepted]


class ReviewState(BaseModel):
    """A document's review item, when it has one."""

    reason: str
    status: str
    decided_label: str | None
    due_at: AwareDatetime


class DeadLetterState(BaseModel):
    """Why a document was dead-lettered: the stage that gave up, its error class, and why."""

    stage: str | None
    error_class: str | None
    reason: str | None = Field(
        description="None for documents dead-lettered before the reason was recorded"
    )


DocumentStatusName = Literal[
    "received", "routed", "in_review", "decided", "discarded", "dead_lettered"
]
"""``received`` and ``in_review`` are on the way; the others are terminal (until a reviewer
or a re-driven record moves them)."""


class DocumentStatus(BaseModel):
    """How far a document has got: received, routed (to a queue), in_review, decided,
    discarded (spam or not a document) or dead_lettered (with why, in ``dead_letter``)."""

    document_id: str
    status: DocumentStatusName
    source: dict[str, str]
    filename: str | None
    media_type: str
    size_bytes: int
    parent_document_id: str | None
    message_id: str | None = Field(
        default=None, description="The Message-ID of the email it came out of, if any"
    )
    received_at: AwareDatetime
    queue: str | None
    model_version: str | None
    review: ReviewState | None
    dead_letter: DeadLetterState | None = None


class DocumentStatuses(BaseModel):
    """The documents found for a question (the documents of an email, by its Message-ID)."""

    documents: list[DocumentStatus]
