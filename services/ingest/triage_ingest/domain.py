"""What ingest decides: which uploads are acceptable and what event describes them."""

from __future__ import annotations

import json
import mimetypes
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from pathlib import PurePosixPath, PureWindowsPath

from pydantic import TypeAdapter, ValidationError

from triage_contracts import (
    BlobRef,
    DocumentReceivedV1,
    DocumentRef,
    EmailInfo,
    Producer,
    Source,
    derive_document_id,
)
from triage_contracts.events import MAX_METADATA_ITEMS, MetadataKey, MetadataValue

EMAIL_MEDIA_TYPE = "message/rfc822"
ACCEPTED_MEDIA_TYPES = frozenset(
    {"application/pdf", "text/plain", "text/html", "text/markdown", EMAIL_MEDIA_TYPE}
)

_UNSAFE = re.compile(r"[^\w.\- ()]+")
# The event contract's rules for metadata, checked here so that a bad key is a 422, not an
# event that fails to validate after the upload was stored.
_METADATA: TypeAdapter[dict[MetadataKey, MetadataValue]] = TypeAdapter(
    dict[MetadataKey, MetadataValue]
)


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
    source: Source,
    sha256: str,
    size_bytes: int,
    media_type: str,
    filename: str | None,
    received_at: datetime,
    producer: Producer,
    identity: tuple[str, ...] = (),
    parent_document_id: str | None = None,
    email: EmailInfo | None = None,
    metadata: Mapping[str, str] | None = None,
) -> DocumentReceivedV1:
    """Describe an inbound document; the same identity from the same source gets the same id.

    The identity defaults to the content hash, so the same bytes from the same source are
    one document however often they arrive.
    """
    return DocumentReceivedV1(
        producer=producer,
        document_id=derive_document_id(source.kind.value, source.name, *(identity or (sha256,))),
        document=DocumentRef(
            source=source,
            blob=BlobRef(sha256=sha256, size_bytes=size_bytes, media_type=media_type),
            filename=safe_filename(filename),
            received_at=received_at,
            parent_document_id=parent_document_id,
            email=email,
            metadata=dict(metadata or {}),
        ),
    )


def parse_metadata(raw: str | None) -> dict[str, str]:
    """Parse the optional upload metadata (a JSON object of strings) or raise ValueError."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError("metadata must be a JSON object") from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("metadata must be a JSON object whose values are strings")
    if len(value) > MAX_METADATA_ITEMS:
        raise ValueError(f"metadata may have at most {MAX_METADATA_ITEMS} keys")
    try:
        return _METADATA.validate_python(value)
    except ValidationError as exc:
        raise ValueError(
            "metadata keys are 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'; "
            "values at most 500 characters"
        ) from exc
