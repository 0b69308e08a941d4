"""Ingest service: accepts uploads, stores bytes in the blob store, publishes DocumentReceived."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, File, HTTPException, UploadFile, status
from pydantic import BaseModel

from triage_contracts import topics, utcnow
from triage_ingest import domain
from triage_ingest.metrics import UPLOAD_BYTES, UPLOADS
from triage_ingest.settings import Settings
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.kafka import make_broker, publish_event
from triage_runtime.metrics import EVENTS_PRODUCED
from triage_runtime.ops import ops_router
from triage_runtime.service import producer_for

SERVICE = "ingest"
CHUNK = 1024 * 1024
log = logging.getLogger(__name__)


class Accepted(BaseModel):
    """One accepted file."""

    document_id: str
    filename: str | None
    media_type: str
    size_bytes: int
    sha256: str


class UploadAccepted(BaseModel):
    """The answer to an upload: the documents it created (202 Accepted)."""

    documents: list[Accepted]


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while chunk := await upload.read(CHUNK):
        total += len(chunk)
        if total > limit:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                detail=f"{upload.filename or 'file'} is larger than the {limit}-byte limit",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ingest app; connects to Kafka only when the app starts."""
    settings = settings or Settings()
    producer = producer_for(SERVICE, "triage-ingest")
    broker = make_broker(settings.kafka_bootstrap, client_id="triage-ingest")
    blobs = LocalBlobStore(settings.blob_dir)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await broker.start()
        log.info("ingest ready", extra={"port": settings.port})
        yield
        await broker.stop()
        log.info("stopped cleanly")

    async def kafka_ready() -> bool:
        return await broker.ping(timeout=2.0)

    app = FastAPI(
        title="Triage ingest",
        summary="Upload documents into Triage.",
        version=producer.version,
        lifespan=lifespan,
    )
    app.include_router(ops_router(service=SERVICE, checks={"kafka": kafka_ready}))

    @app.post(
        "/v1/documents",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=UploadAccepted,
        summary="Upload one or more documents (PDF, text or HTML)",
        responses={
            413: {"description": "A file is over the size limit"},
            415: {"description": "A file's type is not accepted"},
        },
    )
    async def upload(
        files: Annotated[list[UploadFile], File(description="The documents to triage")],
    ) -> UploadAccepted:
        if len(files) > settings.max_files_per_request:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                detail=f"at most {settings.max_files_per_request} files per request",
            )
        # Check every file before accepting any, so a request is all or nothing.
        prepared: list[tuple[str | None, str, bytes]] = []
        for item in files:
            filename = domain.safe_filename(item.filename)
            try:
                media_type = domain.media_type_for(item.content_type, filename)
            except domain.UnsupportedMediaTypeError as exc:
                UPLOADS.labels("unsupported_type").inc()
                raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc)) from exc
            try:
                data = await _read_limited(item, settings.max_upload_bytes)
            except HTTPException:
                UPLOADS.labels("too_large").inc()
                raise
            prepared.append((filename, media_type, data))

        accepted: list[Accepted] = []
        for filename, media_type, data in prepared:
            # The blob is durable before the event exists, so no event points at nothing.
            sha256 = await asyncio.to_thread(blobs.put, data)
            event = domain.document_received(
                source_name=settings.source_name,
                sha256=sha256,
                size_bytes=len(data),
                media_type=media_type,
                filename=filename,
                received_at=utcnow(),
                producer=producer,
            )
            await publish_event(broker, settings.topic(topics.DOCUMENTS), event)
            EVENTS_PRODUCED.labels(SERVICE, topics.DOCUMENTS).inc()
            UPLOADS.labels("accepted").inc()
            UPLOAD_BYTES.observe(len(data))
            log.info(
                "document accepted",
                extra={
                    "document_id": event.document_id,
                    "media_type": media_type,
                    "size_bytes": len(data),
                    "trace_id": event.trace_id,
                },
            )
            accepted.append(
                Accepted(
                    document_id=event.document_id,
                    filename=filename,
                    media_type=media_type,
                    size_bytes=len(data),
                    sha256=sha256,
                )
            )
        return UploadAccepted(documents=accepted)

    return app
