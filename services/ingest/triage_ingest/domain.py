"""What ingest decides: which uploads are acceptable and what event describes them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
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
    SourceKind,
    derive_document_id,
)
from triage_contracts.events import MAX_METADATA_ITEMS, MetadataKey, MetadataValue
from triage_text.email.headers import without_controls
from triage_text.email.parse import EMAIL_MEDIA_TYPE
from triage_text.mediatype import UNTYPED, decide_media_type

ACCEPTED_MEDIA_TYPES = frozenset(
    {"application/pdf", "text/plain", "text/html", "text/markdown", EMAIL_MEDIA_TYPE}
)
# A file declared as UNTYPED (or as nothing) is given the type its content or name's
# extension says (triage_text.mediatype, which email parts are typed by too).
# What a file part may be declared as: an accepted type, or untyped.
PART_MEDIA_TYPES = (*sorted(ACCEPTED_MEDIA_TYPES), UNTYPED)

DOCUMENT_ID = re.compile(r"doc_[0-9a-f]{32}")
# Most filesystems allow 255 bytes per name, and a document's name column 255 characters.
MAX_NAME_BYTES = 255
_UNSAFE = re.compile(r"[^\w.\- ()]+")
# The event contract's rules for metadata, checked here so that a bad key is a 422, not an
# event that fails to validate after the upload was stored.
_METADATA: TypeAdapter[dict[MetadataKey, MetadataValue]] = TypeAdapter(
    dict[MetadataKey, MetadataValue]
)


# The most metadata the contract allows (20 keys of 64, values of 500 characters) with room
# for \uXXXX escapes; anything longer is refused before it is parsed.
MAX_METADATA_CHARS = 64 * 1024


class UnsupportedMediaTypeError(ValueError):
    """The upload is of a type Triage does not ingest."""


def safe_filename(raw: str | None) -> str | None:
    """Return a display-safe base name: no directories, no control or odd characters."""
    if not raw:
        return None
    name = PureWindowsPath(PurePosixPath(raw).name).name
    name = unicodedata.normalize("NFKC", name)
    name = _UNSAFE.sub("_", name).strip(" ._")
    return shortened_name(name, MAX_NAME_BYTES).lstrip(" ._") or None


def shortened_name(name: str, max_bytes: int) -> str:
    """``name`` cut from the front, if need be, to at most ``max_bytes`` as the filesystem
    counts them (UTF-8); the end, with the extension that decides the media type, stays.

    Cut between characters, never inside one.
    """
    if len(os.fsencode(name)) <= max_bytes:
        return name
    kept = name[-max_bytes:]  # a character is at least one byte
    while len(os.fsencode(kept)) > max_bytes:
        kept = kept[1:]
    return kept


def accepted_types_text() -> str:
    """The accepted media types in words, for the API's documentation."""
    return (
        f"one of {', '.join(sorted(ACCEPTED_MEDIA_TYPES))}; or {UNTYPED} (or no type) with "
        "content (a PDF's signature) or a file name whose extension says one of them"
    )


def media_type_for(declared: str | None, filename: str | None, head: bytes = b"") -> str:
    """Decide an upload's media type from the declared type, falling back to its content
    (``head``, its first bytes) and then its file name; raise if it is not accepted."""
    base = decide_media_type(declared, filename, head)
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
    id_source: Source | None = None,
) -> DocumentReceivedV1:
    """Describe an inbound document; the same identity from the same source gets the same id.

    The identity defaults to the content hash, so the same bytes from the same source are
    one document however often they arrive. ``id_source``, when given, is the source whose
    ids it is one of (a copy of a known email takes its first arrival's, see Intake).
    """
    namespace = id_source or source
    return DocumentReceivedV1(
        producer=producer,
        document_id=derive_document_id(
            namespace.kind.value, namespace.name, *(identity or (sha256,))
        ),
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
    if len(raw) > MAX_METADATA_CHARS:
        raise ValueError(f"metadata may be at most {MAX_METADATA_CHARS} characters of JSON")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError("metadata must be a JSON object") from exc
    except RecursionError as exc:  # deeper than the parser's stack: never a flat object
        raise ValueError("metadata must be a flat JSON object; it is nested too deeply") from exc
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


def is_document_id(text: str) -> bool:
    """Whether ``text`` has the shape of a document id (anything else is never looked up)."""
    return DOCUMENT_ID.fullmatch(text) is not None


CONNECTOR_EMAILS = "connectors"


def email_scope(source: Source) -> str:
    """Where copies of an email are one set of documents: all that the connectors (SMTP,
    IMAP, drop folder) take in, which is the organisation's; each API key's uploads apart,
    as its documents are (``visible_to``), so no key learns of another's mail."""
    if source.kind == SourceKind.UPLOAD:
        return f"upload:{source.name}"
    return CONNECTOR_EMAILS


def bare_message_id(text: str) -> str:
    """A Message-ID as the email parser keeps it: without its angle brackets, control
    characters as spaces."""
    text = without_controls(text).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text


def visible_to(source: Mapping[str, str], caller: str, *, keys_required: bool) -> bool:
    """Whether a caller may see a document: with API keys, an upload exists only for the key
    that sent it; what the connectors (SMTP, IMAP, drop folder) took in, for every key."""
    if not keys_required or source["kind"] != SourceKind.UPLOAD:
        return True
    return source["name"] == caller


def request_sha256(
    files: Sequence[tuple[str | None, str, str, int]], metadata: Mapping[str, str]
) -> str:
    """Fingerprint an upload for its Idempotency-Key: each file's name, type, hash and size,
    and the metadata. Stored with the answer, so it must never change for the same request.
    """
    request = [[list(file) for file in files], sorted(metadata.items())]
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
