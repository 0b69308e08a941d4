"""The upload API: send documents in (``POST /v1/documents``) and follow one (``GET``)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, HTTPException, Query, UploadFile, status

from triage_contracts import Source, SourceKind
from triage_ingest import domain, uploads
from triage_ingest.deps import BlobsDep, Caller, IntakeDep, SettingsDep, StoreDep
from triage_ingest.intake import Intake
from triage_ingest.schemas import DocumentStatus, DocumentStatuses, UploadAccepted
from triage_runtime.blobstore import BlobStore
from triage_runtime.openapi import (
    INTERNAL_ERROR,
    RETRY_AFTER,
    WWW_AUTHENTICATE,
    Invalid,
    refusal,
)

log = logging.getLogger(__name__)

router = APIRouter()


@router.post(
    "/v1/documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadAccepted,
    summary="Upload documents: PDF, text, HTML, Markdown, or saved emails (.eml)",
    description=(
        "Each file part's media type is "
        + domain.accepted_types_text()
        + ". A request is all or nothing: every file is checked before any is accepted."
    ),
    responses={
        400: refusal("The multipart body could not be parsed"),
        401: refusal(
            "No valid X-API-Key (answered before the body is read)", headers=WWW_AUTHENTICATE
        ),
        408: refusal(
            "The body stopped arriving for the idle timeout, or arrived slower than the "
            "minimum rate"
        ),
        409: refusal(
            "A request with this Idempotency-Key is still in progress", headers=RETRY_AFTER
        ),
        413: refusal(
            "A file, the number of files, the form or the request is over its limit (refused "
            "as soon as the streaming body passes it)"
        ),
        415: refusal("A file's type is not accepted (the answer names the accepted ones)"),
        422: refusal(
            "Invalid metadata or form, or an Idempotency-Key used for a different request",
            model=Invalid,
        ),
        429: refusal(
            "Over this API key's upload rate, or its concurrent uploads", headers=RETRY_AFTER
        ),
        500: refusal(INTERNAL_ERROR),
        503: refusal(
            "At the service's limit of concurrent uploads, or Kafka or PostgreSQL failed: "
            "nothing was accepted",
            headers=RETRY_AFTER,
        ),
    },
    # The media types each file part may have, from the one place that decides them.
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "encoding": {"files": {"contentType": ", ".join(domain.PART_MEDIA_TYPES)}}
                }
            }
        }
    },
)
async def upload(
    *,
    who: Caller,
    settings: SettingsDep,
    intake: IntakeDep,
    blobs: BlobsDep,
    store: StoreDep,
    files: Annotated[list[UploadFile], File(description="The documents to triage")],
    metadata: Annotated[
        str | None, Form(description="Optional JSON object of strings kept with each document")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description=(
                "Retries with the same key get the same answer; while the first is in "
                "progress they wait for it (409 if it takes too long)"
            ),
        ),
    ] = None,
) -> UploadAccepted:
    meta = uploads.checked_metadata(metadata)
    checked = uploads.checked_files(files, max_files=settings.max_files_per_request)
    directory = settings.blob_dir / ".spool"
    async with uploads.spooled_files(
        checked, limit=settings.max_document_bytes, directory=directory
    ) as spooled:
        if not idempotency_key:
            return await _accept(intake, blobs, spooled, caller=who.name, metadata=meta)
        # The key is reserved before anything is stored or accepted: of requests racing
        # under one key, one goes on and the others replay its answer or get 422.
        request_sha = domain.request_sha256(uploads.as_stored(spooled), meta)
        held = await uploads.hold_key(
            store,
            who.id,
            idempotency_key,
            request_sha,
            hold_seconds=settings.idempotency_reservation_seconds,
            wait_seconds=settings.idempotency_wait_seconds,
        )
        if isinstance(held, UploadAccepted):
            return held
        try:
            async with uploads.key_kept(
                store,
                who.id,
                idempotency_key,
                held,
                hold_seconds=settings.idempotency_reservation_seconds,
            ):
                answer = await _accept(intake, blobs, spooled, caller=who.name, metadata=meta)
        except BaseException:
            await store.release_idempotency_key(who.id, idempotency_key, owner=held)
            raise
        if not await store.answer_idempotency_key(
            who.id, idempotency_key, owner=held, response=answer.model_dump(mode="json")
        ):
            log.warning("an Idempotency-Key's reservation ran out before its request answered")
        return answer


async def _accept(
    intake: Intake,
    blobs: BlobStore,
    spooled: list[uploads.SpooledFile],
    *,
    caller: str,
    metadata: dict[str, str],
) -> UploadAccepted:
    stored = await uploads.store_files(intake, spooled)
    source = Source(kind=SourceKind.UPLOAD, name=caller)
    accepted = await uploads.accept_files(intake, blobs, stored, source=source, metadata=metadata)
    return uploads.upload_accepted(accepted)


@router.get(
    "/v1/documents",
    response_model=DocumentStatuses,
    summary="The documents of an email, by its Message-ID",
    description=(
        "Every document (body and attachments) of the email(s) with this Message-ID that "
        "this key may see (from any connector, or its own uploads), oldest first; an empty "
        "list when none is known. "
        "URL-encode the Message-ID; its angle brackets may be left out "
        "(`%3Cid%40example.com%3E` or `id%40example.com`). "
        "A copy of a known email (same Message-ID, subject, sender and parts) is the same "
        "documents; a different email reusing the Message-ID has documents of its own."
    ),
    responses={
        401: refusal("No valid X-API-Key", headers=WWW_AUTHENTICATE),
        422: refusal("No message_id, or one over 998 characters", model=Invalid),
        500: refusal(INTERNAL_ERROR),
        503: refusal("PostgreSQL failed; try again", headers=RETRY_AFTER),
    },
)
async def documents_of_message(
    who: Caller,
    settings: SettingsDep,
    store: StoreDep,
    message_id: Annotated[
        str,
        Query(
            min_length=1,
            max_length=998,
            description="The email's Message-ID, with or without its angle brackets",
        ),
    ],
) -> DocumentStatuses:
    ids = await store.documents_of_message(domain.bare_message_id(message_id))
    found = [await store.status(doc) for doc in ids]
    return DocumentStatuses(
        documents=[
            DocumentStatus.model_validate(doc)
            for doc in found
            if doc is not None
            and domain.visible_to(doc["source"], who.name, keys_required=settings.require_api_key)
        ]
    )


@router.get(
    "/v1/documents/{document_id}",
    response_model=DocumentStatus,
    summary="A document's status: where it went, or how far it has got",
    responses={
        401: refusal("No valid X-API-Key", headers=WWW_AUTHENTICATE),
        404: refusal("No such document for this API key (another key's upload)"),
        500: refusal(INTERNAL_ERROR),
        503: refusal("PostgreSQL failed; try again", headers=RETRY_AFTER),
    },
)
async def document_status(
    who: Caller, settings: SettingsDep, store: StoreDep, document_id: str
) -> DocumentStatus:
    if not domain.is_document_id(document_id):  # never a database question
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such document")
    found = await store.status(document_id)
    # A key sees its own uploads and what the connectors took in; other uploads do not
    # exist for it.
    if found is None or not domain.visible_to(
        found["source"], who.name, keys_required=settings.require_api_key
    ):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such document")
    return DocumentStatus.model_validate(found)
