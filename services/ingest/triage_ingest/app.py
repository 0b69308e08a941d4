"""Ingest service: the upload API, plus the SMTP, IMAP and drop-folder connectors.

Every path hands its input to one Intake (store bytes, record, publish once).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import (
    Depends,
    FastAPI,
    File,
    Form,
    Header,
    HTTPException,
    Request,
    UploadFile,
    status,
)
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import AwareDatetime, BaseModel
from sqlalchemy.exc import DBAPIError

from triage_contracts import Source, SourceKind, topics
from triage_ingest import domain
from triage_ingest.dropfolder import DropFolder
from triage_ingest.imap import ImapConnector
from triage_ingest.intake import Accepted, Arrival, Intake
from triage_ingest.metrics import UPLOAD_BYTES, UPLOADS
from triage_ingest.settings import Settings
from triage_ingest.smtp import SmtpReceiver
from triage_ingest.store import IngestStore
from triage_runtime.apikeys import ApiKeys, KeyHolder
from triage_runtime.db.engine import database_reachable, make_async_engine
from triage_runtime.http import ConcurrencyLimit, RateLimiter, RequestBodyLimit
from triage_runtime.kafka import make_broker
from triage_runtime.ops import ops_router
from triage_runtime.service import producer_for

SERVICE = "ingest"
CHUNK = 1024 * 1024
log = logging.getLogger(__name__)


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
    """How far a document has got: received, routed (to a queue), in_review or decided."""

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


def _spool_sync(upload: UploadFile, limit: int, directory: Path) -> tuple[Path, int]:
    """Copy an upload to a temporary file in chunks; size None means it went over ``limit``."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".upload-", delete=False) as handle:
        size = 0
        upload.file.seek(0)
        while chunk := upload.file.read(CHUNK):
            size += len(chunk)
            if size > limit:
                break
            handle.write(chunk)
    path = Path(handle.name)
    if size > limit:
        path.unlink(missing_ok=True)
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"{upload.filename or 'file'} is larger than the {limit}-byte limit",
        )
    return path, size


DEPENDENCY_RETRY_SECONDS = 5
DOCUMENT_ID = re.compile(r"doc_[0-9a-f]{32}")

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")


async def current_caller(
    request: Request, key: Annotated[str | None, Depends(API_KEY_HEADER)]
) -> KeyHolder:
    """Who is calling: the holder of a live API key (401 otherwise)."""
    settings: Settings = request.app.state.settings
    if not settings.require_api_key:
        return KeyHolder(0, settings.source_name)
    api_keys: ApiKeys = request.app.state.api_keys
    holder = await api_keys.holder(key) if key else None
    if holder is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid X-API-Key header is required",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    return holder


Caller = Annotated[KeyHolder, Depends(current_caller)]


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ingest app; Kafka, PostgreSQL and connectors start only with the app."""
    settings = settings or Settings()
    producer = producer_for(SERVICE, "triage-ingest")
    broker = make_broker(settings.kafka_bootstrap, client_id="triage-ingest")
    engine = make_async_engine(settings.database_url)
    store = IngestStore(engine)
    blobs = settings.open_blob_store()
    spool_dir = settings.blob_dir / ".spool"
    intake = Intake(
        blobs=blobs,
        broker=broker,
        store=store,
        producer=producer,
        documents_topic=settings.topic(topics.DOCUMENTS),
        deadletter_topic=settings.topic(topics.DEADLETTER),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await broker.start()
            stack.push_async_callback(broker.stop)
            stack.push_async_callback(engine.dispose)
            if settings.smtp_enabled:
                smtp = SmtpReceiver(intake, settings)
                await smtp.start()
                stack.push_async_callback(smtp.stop)
            for account in settings.imap_accounts:
                connector = ImapConnector(intake, store, account)
                await connector.start()
                stack.push_async_callback(connector.stop)
            if settings.drop_dir is not None:
                folder = DropFolder(intake, settings)
                await folder.start()
                stack.push_async_callback(folder.stop)
            log.info("ingest ready", extra={"port": settings.port})
            yield
        log.info("stopped cleanly")

    async def kafka_ready() -> bool:
        return await broker.ping(timeout=2.0)

    async def database_ready() -> bool:
        return await database_reachable(engine)

    app = FastAPI(
        title="Triage ingest",
        summary="Upload documents into Triage and follow them through the pipeline.",
        version=producer.version,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.api_keys = ApiKeys(engine)
    app.add_middleware(RequestBodyLimit, limit=lambda: settings.max_request_bytes)
    # Added last, so it runs first: an overloaded ingest refuses before reading any body.
    app.add_middleware(
        ConcurrencyLimit,
        limit=lambda: settings.max_concurrent_uploads,
        paths=("/v1/documents",),
        retry_after_seconds=1,
        on_reject=UPLOADS.labels("overloaded").inc,
    )
    limiter = RateLimiter(
        per_minute=settings.uploads_per_minute_per_key,
        burst=settings.upload_burst_per_key,
        clock=time.monotonic,
    )

    @app.exception_handler(KafkaError)
    @app.exception_handler(DBAPIError)
    async def dependency_down(_request: Request, exc: Exception) -> JSONResponse:
        """Kafka or PostgreSQL failed mid-request: nothing was accepted; ask for a retry."""
        log.warning("upload refused: a dependency failed", extra={"error": type(exc).__name__})
        UPLOADS.labels("unavailable").inc()
        return JSONResponse(
            {"detail": "a storage dependency is unavailable; nothing was accepted, retry later"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(DEPENDENCY_RETRY_SECONDS)},
        )

    app.include_router(
        ops_router(
            service=SERVICE,
            checks={"kafka": kafka_ready, "database": database_ready},
            metrics_token=settings.metrics_token,
        )
    )

    def _checked_metadata(metadata: str | None) -> dict[str, str]:
        try:
            return domain.parse_metadata(metadata)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc

    def _checked_files(files: list[UploadFile]) -> list[tuple[str | None, str, UploadFile]]:
        # Check every file before accepting any, so a request is all or nothing.
        if len(files) > settings.max_files_per_request:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"at most {settings.max_files_per_request} files per request",
            )
        checked = []
        for item in files:
            filename = domain.safe_filename(item.filename)
            try:
                media_type = domain.media_type_for(item.content_type, filename)
            except domain.UnsupportedMediaTypeError as exc:
                UPLOADS.labels("unsupported_type").inc()
                raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc)) from exc
            checked.append((filename, media_type, item))
        return checked

    @app.post(
        "/v1/documents",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=UploadAccepted,
        summary="Upload documents: PDF, text, HTML, Markdown, or saved emails (.eml)",
        responses={
            401: {"description": "No valid API key"},
            413: {"description": "A file or the request is over the size limit"},
            415: {"description": "A file's type is not accepted"},
            422: {"description": "Invalid metadata, or an Idempotency-Key reused differently"},
            429: {"description": "Over this API key's upload rate; retry after Retry-After"},
            503: {"description": "Overloaded or a dependency is down; retry after Retry-After"},
        },
    )
    async def upload(
        who: Caller,
        files: Annotated[list[UploadFile], File(description="The documents to triage")],
        metadata: Annotated[
            str | None, Form(description="Optional JSON object of strings kept with each document")
        ] = None,
        idempotency_key: Annotated[
            str | None,
            Header(max_length=200, description="Retries with the same key get the same answer"),
        ] = None,
    ) -> UploadAccepted:
        if settings.uploads_per_minute_per_key > 0:
            wait = limiter.take(who.id)
            if wait > 0:
                UPLOADS.labels("rate_limited").inc()
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    "too many uploads for this API key; slow down",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        meta = _checked_metadata(metadata)
        checked = _checked_files(files)
        spooled: list[tuple[str | None, str, Path, int]] = []
        try:
            for filename, media_type, item in checked:
                try:
                    path, size = await asyncio.to_thread(
                        _spool_sync, item, settings.max_upload_bytes, spool_dir
                    )
                except HTTPException:
                    UPLOADS.labels("too_large").inc()
                    raise
                spooled.append((filename, media_type, path, size))
            hashes = await intake.store_files([path for _, _, path, _ in spooled])
            stored = [
                (filename, media_type, sha256, size)
                for (filename, media_type, _, size), sha256 in zip(spooled, hashes, strict=True)
            ]
        finally:
            await asyncio.to_thread(_remove, [path for _, _, path, _ in spooled])

        request_sha = hashlib.sha256(
            json.dumps([stored, sorted(meta.items())], sort_keys=True).encode()
        ).hexdigest()
        if idempotency_key:
            previous = await store.idempotent_response(who.id, idempotency_key)
            if previous is not None:
                if previous[0] != request_sha:
                    raise HTTPException(
                        status.HTTP_422_UNPROCESSABLE_CONTENT,
                        "this Idempotency-Key was used for a different request",
                    )
                return UploadAccepted.model_validate(previous[1])

        source = Source(kind=SourceKind.UPLOAD, name=who.name)
        # Plain files are accepted together (one transaction, one round trip to Kafka);
        # a saved email (.eml) becomes its body and attachments, as if mailed in.
        plain = await intake.accept_many(
            [
                Arrival(
                    source=source,
                    sha256=sha256,
                    size_bytes=size,
                    media_type=media_type,
                    filename=filename,
                    metadata=meta,
                )
                for filename, media_type, sha256, size in stored
                if media_type != domain.EMAIL_MEDIA_TYPE
            ]
        )
        accepted: list[Accepted] = []
        for _, media_type, sha256, _ in stored:  # in the order the files came
            if media_type == domain.EMAIL_MEDIA_TYPE:
                raw = await asyncio.to_thread(blobs.get, sha256)
                accepted.extend((await intake.accept_email(raw, source=source)).documents)
            else:
                accepted.append(plain.pop(0))
            UPLOADS.labels("accepted").inc()
            UPLOAD_BYTES.observe(size)
        answer = UploadAccepted(
            documents=[
                DocumentAccepted(
                    document_id=a.document_id,
                    status_url=f"/v1/documents/{a.document_id}",
                    filename=a.filename,
                    media_type=a.media_type,
                    size_bytes=a.size_bytes,
                    sha256=a.sha256,
                )
                for a in accepted
            ]
        )
        if idempotency_key:
            await store.remember_response(
                who.id,
                idempotency_key,
                request_sha256=request_sha,
                response=answer.model_dump(mode="json"),
            )
        return answer

    @app.get(
        "/v1/documents/{document_id}",
        response_model=DocumentStatus,
        summary="A document's status: received, routed (to which queue), in_review or decided",
        responses={404: {"description": "No such document for this API key"}},
    )
    async def document_status(who: Caller, document_id: str) -> DocumentStatus:
        if not DOCUMENT_ID.fullmatch(document_id):  # never a database question
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such document")
        found: dict[str, Any] | None = await store.status(document_id)
        # A key sees only its own uploads; other documents do not exist for it.
        if found is None or (
            settings.require_api_key
            and (
                found["source"]["kind"] != SourceKind.UPLOAD or found["source"]["name"] != who.name
            )
        ):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such document")
        return DocumentStatus.model_validate(found)

    return app
