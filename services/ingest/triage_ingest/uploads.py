"""An upload's steps: check the request, spool and store its files, accept them in order.

Each refusal is an HTTPException, counted in ``triage_ingest_uploads_total`` by outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

from fastapi import HTTPException, UploadFile, status

from triage_contracts import Source
from triage_ingest import body, domain
from triage_ingest.intake import Accepted, Arrival, Intake
from triage_ingest.metrics import UPLOAD_BYTES, UPLOADS
from triage_ingest.schemas import DocumentAccepted, UploadAccepted
from triage_ingest.store import IngestStore
from triage_runtime.blobstore import BlobStore
from triage_text.email.parse import EMAIL_MEDIA_TYPE
from triage_text.mediatype import SNIFF_BYTES

CHUNK = 1024 * 1024

log = logging.getLogger(__name__)


class CheckedFile(NamedTuple):
    """An uploaded file whose name and media type are acceptable."""

    filename: str | None
    media_type: str
    upload: UploadFile


class StoredFile(NamedTuple):
    """An uploaded file in the blob store (a tuple: the request fingerprint hashes it)."""

    filename: str | None
    media_type: str
    sha256: str
    size_bytes: int


def checked_metadata(metadata: str | None) -> dict[str, str]:
    """The upload's metadata as a dict of strings (422 when it is not one)."""
    try:
        return domain.parse_metadata(metadata)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


def checked_files(files: Sequence[UploadFile], *, max_files: int) -> list[CheckedFile]:
    """Check every file before accepting any, so a request is all or nothing (413, 415)."""
    if len(files) > max_files:  # found while streaming (body.FormSizes); kept as a backstop
        raise body.too_many_files(max_files)
    checked = []
    for item in files:
        filename = domain.safe_filename(item.filename)
        try:
            media_type = domain.media_type_for(item.content_type, filename, _head(item))
        except domain.UnsupportedMediaTypeError as exc:
            UPLOADS.labels("unsupported_type").inc()
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc)) from exc
        checked.append(CheckedFile(filename, media_type, item))
    return checked


def _head(upload: UploadFile) -> bytes:
    """The first bytes of an upload, by which an untyped file's type is decided."""
    upload.file.seek(0)
    head = upload.file.read(SNIFF_BYTES)
    upload.file.seek(0)
    return head


class SpooledFile(NamedTuple):
    """An uploaded file copied to a spool file, with its SHA-256, not yet stored."""

    filename: str | None
    media_type: str
    path: Path
    sha256: str
    size_bytes: int


def spool(upload: UploadFile, limit: int, directory: Path) -> tuple[Path, int, str]:
    """Copy an upload to a temporary file in chunks (413 when it goes over ``limit``);
    return the file, its size and its SHA-256 (the hash the blob store will give it)."""
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".upload-", delete=False) as handle:
        size = 0
        upload.file.seek(0)
        while chunk := upload.file.read(CHUNK):
            size += len(chunk)
            if size > limit:
                break
            digest.update(chunk)
            handle.write(chunk)
    path = Path(handle.name)
    if size > limit:  # found while streaming (body.FormSizes); kept as a backstop
        path.unlink(missing_ok=True)
        raise body.file_too_large(upload.filename, limit)
    return path, size, digest.hexdigest()


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


@asynccontextmanager
async def spooled_files(
    checked: Sequence[CheckedFile], *, limit: int, directory: Path
) -> AsyncIterator[list[SpooledFile]]:
    """Spool each file to ``directory`` for the ``async with`` block; no spool file outlives it."""
    spooled: list[SpooledFile] = []
    try:
        for item in checked:
            try:
                path, size, sha256 = await asyncio.to_thread(spool, item.upload, limit, directory)
            except HTTPException:
                UPLOADS.labels("too_large").inc()
                raise
            spooled.append(SpooledFile(item.filename, item.media_type, path, sha256, size))
        yield spooled
    finally:
        await asyncio.to_thread(_remove, [file.path for file in spooled])


def as_stored(spooled: Sequence[SpooledFile]) -> list[StoredFile]:
    """The files as they will be once stored: what the request fingerprint hashes."""
    return [StoredFile(f.filename, f.media_type, f.sha256, f.size_bytes) for f in spooled]


async def store_files(intake: Intake, spooled: Sequence[SpooledFile]) -> list[StoredFile]:
    """Put the spooled files in the blob store."""
    hashes = await intake.store_files(
        [file.path for file in spooled], sha256s=[file.sha256 for file in spooled]
    )
    if hashes != [file.sha256 for file in spooled]:  # a spool file changed under us
        raise RuntimeError("a stored file's hash is not the one it was spooled with")
    return as_stored(spooled)


async def hold_key(
    store: IngestStore,
    caller_id: int,
    key: str,
    request_sha256: str,
    *,
    hold_seconds: float,
    wait_seconds: float,
) -> uuid.UUID | UploadAccepted:
    """Reserve an Idempotency-Key for this request (its owner token), or the answer the
    request that holds it gave, waited for at most ``wait_seconds``.

    A different request under the key is 422 whether its holder has answered or not yet;
    still no answer after the wait is 409, with Retry-After.
    """
    deadline = time.monotonic() + wait_seconds
    pause = 0.02
    while True:
        claim = await store.claim_idempotency_key(
            caller_id, key, request_sha256=request_sha256, hold_seconds=hold_seconds
        )
        if claim.owner is not None:
            return claim.owner
        if claim.request_sha256 != request_sha256:
            UPLOADS.labels("idempotency_mismatch").inc()
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "this Idempotency-Key was used for a different request",
            )
        if claim.response is not None:
            UPLOADS.labels("replayed").inc()
            return UploadAccepted.model_validate(claim.response)
        left = deadline - time.monotonic()
        if left <= 0:
            UPLOADS.labels("idempotency_busy").inc()
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                "a request with this Idempotency-Key is still in progress; retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait_seconds)))},
            )
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, 0.5)


@asynccontextmanager
async def key_kept(
    store: IngestStore, caller_id: int, key: str, owner: uuid.UUID, *, hold_seconds: float
) -> AsyncIterator[None]:
    """Renew a held Idempotency-Key's reservation every third of it while the body runs.

    The reservation is short, so a key whose request died (the process was killed) is free
    for a retry soon after; a request that is alive keeps its key however long it takes.
    """

    async def renew() -> None:
        while True:
            await asyncio.sleep(hold_seconds / 3)
            try:
                held = await store.renew_idempotency_key(
                    caller_id, key, owner=owner, hold_seconds=hold_seconds
                )
            except Exception:
                # The request's own work decides its answer; a renewal that cannot reach
                # PostgreSQL only shortens the hold (answering checks it still holds the key).
                log.warning("could not renew an Idempotency-Key's hold", exc_info=True)
                return
            if not held:
                return

    renewing = asyncio.create_task(renew())
    try:
        yield
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing


async def accept_files(
    intake: Intake,
    blobs: BlobStore,
    stored: Sequence[StoredFile],
    *,
    source: Source,
    metadata: dict[str, str],
) -> list[Accepted]:
    """Accept the stored files, answering in the order they came."""
    # Plain files are accepted together (one transaction, one round trip to Kafka);
    # a saved email (.eml) becomes its body and attachments, as if mailed in.
    plain = await intake.accept_many(
        [
            Arrival(
                source=source,
                sha256=file.sha256,
                size_bytes=file.size_bytes,
                media_type=file.media_type,
                filename=file.filename,
                metadata=metadata,
            )
            for file in stored
            if file.media_type != EMAIL_MEDIA_TYPE
        ]
    )
    # Each accepted file observes the size of the request's last file, as the handler did
    # before it moved here (kept unchanged in that move; a fix is a change of its own).
    observed_size = stored[-1].size_bytes if stored else 0
    accepted: list[Accepted] = []
    for file in stored:
        if file.media_type == EMAIL_MEDIA_TYPE:
            raw = await asyncio.to_thread(blobs.get, file.sha256)
            emailed = await intake.accept_email(raw, source=source, name=file.filename)
            accepted.extend(emailed.documents)
        else:
            accepted.append(plain.pop(0))
        UPLOADS.labels("accepted").inc()
        UPLOAD_BYTES.observe(observed_size)
    return accepted


def upload_accepted(accepted: Sequence[Accepted]) -> UploadAccepted:
    """The 202 answer: each document with where to follow it."""
    return UploadAccepted(
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
