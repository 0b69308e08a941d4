"""What ingest decides: which uploads are acceptable and what event describes them."""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from datetime import datetime
from pathlib import PurePosixPath, PureWindowsPath

from triage_contracts import (
    BlobRef,
    DocumentReceivedV1,
    DocumentRef,
    Producer,
    Source,
    SourceKind,
    derive_document_id,
)

ACCEPTED_MEDIA_TYPES = frozenset({"application/pdf", "text/plain", "text/html", "text/markdown"})

_UNSAFE = re.compile(r"[^\w.\- ()]+")


class UnsupportedMediaTypeError(ValueError):
    """The upload is of a type Triage does not ingest."""


def safe_filename(raw: str | None) -> str | None:
    """Return a display-safe base name: no directories, no control or odd characters."""
    if not raw:
        return None
    name = PureWindowsPath(PurePosixPath(raw).name).name
    name = unicodedata.normalize("NFKC", name)
    name = _UNSAFE.sub("_", name).strip(" ._")
    return name[:255] or None


def media_type_for(declared: str | None, filename: str | None) -> str:
    """Decide an upload's media type from the declared type, falling back to the file name."""
    base = (declared or "").split(";", 1)[0].strip().lower()
    if base in ("", "application/octet-stream") and filename:
        base = (mimetypes.guess_type(filename)[0] or "").lower()
    if base not in ACCEPTED_MEDIA_TYPES:
        raise UnsupportedMediaTypeError(
            f"media type {base or 'unknown'!r} is not accepted; "
            f"send one of {', '.join(sorted(ACCEPTED_MEDIA_TYPES))}"
        )
    return base


def document_received(
    *,
    source_name: str,
    sha256: str,
    size_bytes: int,
    media_type: str,
    filename: str | None,
    received_at: datetime,
    producer: Producer,
) -> DocumentReceivedV1:
    """Describe an accepted upload; the same bytes from the same source get the same id."""
    return DocumentReceivedV1(
        producer=producer,
        document_id=derive_document_id(SourceKind.UPLOAD.value, source_name, sha256),
        document=DocumentRef(
            source=Source(kind=SourceKind.UPLOAD, name=source_name),
            blob=BlobRef(sha256=sha256, size_bytes=size_bytes, media_type=media_type),
            filename=filename,
            received_at=received_at,
        ),
    )
