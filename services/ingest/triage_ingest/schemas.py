"""The upload API's JSON answers: the documents an upload created, and a document's status."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel


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


class DocumentStatus(BaseModel):
    """How far a document has got: received, routed (to a queue), in_review, decided,
    discarded (spam or not a document) or dead_lettered."""

    document_id: str
    status: str
    source: dict[str, str]
    filename: str | None
    media_type: str
    size_bytes: int
    parent_document_id: str | None
    received_at: AwareDatetime
    queue: str | None
    model_version: str | None
    review: ReviewState | None
